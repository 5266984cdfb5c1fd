"""The transformers engine on tiny real-architecture models (and, marked slow, on the real SmolLM2 GGUF)."""

import json
import shutil

import pytest
import torch
from PIL import Image, ImageDraw

from rapid_agent.backends import (
    BackendUnavailableError,
    ChatRequest,
    Completion,
    EngineError,
    GenerationConfig,
    load_engine,
)
from rapid_agent.backends.hf import HFEngine, ImageOnlyQwen2_5_VLProcessor, load_processor

GREEDY = GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=10)


def _images() -> list[Image.Image]:
    circle = Image.new("RGB", (112, 112), "white")
    ImageDraw.Draw(circle).ellipse((20, 20, 90, 90), fill="red")
    square = Image.new("RGB", (224, 160), "white")
    ImageDraw.Draw(square).rectangle((40, 30, 150, 130), fill="blue")
    triangle = Image.new("RGB", (224, 224), "black")
    ImageDraw.Draw(triangle).polygon([(112, 10), (10, 210), (214, 210)], fill="green")
    return [circle, square, triangle]


def _caption_requests() -> list[ChatRequest]:
    prompts = ["Describe the image.", "What shape is this?", "Count the shapes, then describe their colours."]
    return [ChatRequest(p, image=img) for p, img in zip(prompts, _images())]


@pytest.fixture(scope="module")
def captioner(tiny_captioner_dir) -> HFEngine:
    return HFEngine(str(tiny_captioner_dir), role="captioner")


def _count_generate_calls(engine: HFEngine, monkeypatch) -> list[int]:
    """Patch the model's generate to record the batch size of every call."""
    sizes: list[int] = []
    original = engine.model.generate

    def counting_generate(*args, **kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(engine.model, "generate", counting_generate)
    return sizes


def test_captioner_batch_is_one_generate_call(captioner, monkeypatch):
    calls = _count_generate_calls(captioner, monkeypatch)
    out = captioner.generate(_caption_requests(), GREEDY)
    assert calls == [3]
    assert len(out) == 3 and all(isinstance(c, Completion) for c in out)
    assert all(c.prompt_tokens > 0 and 0 < c.completion_tokens <= GREEDY.max_new_tokens for c in out)
    assert all(c.latency_s > 0 for c in out)
    # prompt tokens count the image's visual tokens and exclude the left padding: a 224x224 image is 64 tokens,
    # a 112x112 one 16, so the triangle prompt is the longest although its padding is none
    assert out[2].prompt_tokens > out[1].prompt_tokens > out[0].prompt_tokens


def test_visual_tokens_follow_image_size(captioner):
    small, large = Image.new("RGB", (112, 112), "red"), Image.new("RGB", (224, 224), "red")
    out = captioner.generate([ChatRequest("Describe.", image=small), ChatRequest("Describe.", image=large)], GREEDY)
    assert out[1].prompt_tokens - out[0].prompt_tokens == 64 - 16


def test_batches_are_chunked_by_max_batch_size(tiny_captioner_dir, monkeypatch):
    engine = HFEngine(str(tiny_captioner_dir), role="captioner", max_batch_size=2)
    calls = _count_generate_calls(engine, monkeypatch)
    out = engine.generate(_caption_requests(), GREEDY)
    assert calls == [2, 1]
    assert all(isinstance(c, Completion) for c in out)


def test_greedy_batch_equals_one_by_one(captioner):
    requests = _caption_requests()
    batched = captioner.generate(requests, GREEDY)
    single = [captioner.generate([r], GREEDY)[0] for r in requests]
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in single]
    assert [c.prompt_tokens for c in batched] == [c.prompt_tokens for c in single]
    # the images differ, so a correct model gives different captions; equal ones would hide a padding bug
    assert len({c.text for c in single}) == 3


def test_same_seed_same_sample_and_caller_rng_untouched(captioner):
    requests = _caption_requests()[:2]
    sample = GenerationConfig(temperature=1.0, top_p=1.0, max_new_tokens=16, seed=7)
    rng_before = torch.get_rng_state()
    first = [c.text for c in captioner.generate(requests, sample)]
    second = [c.text for c in captioner.generate(requests, sample)]
    other = [c.text for c in captioner.generate(requests, GenerationConfig(**{**sample.__dict__, "seed": 8}))]
    assert first == second
    assert first != other
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_captioner_accepts_a_text_only_request(captioner):
    out = captioner.generate([ChatRequest("Say something."), *_caption_requests()[:1]], GREEDY)
    assert all(isinstance(c, Completion) and c.completion_tokens > 0 for c in out)


def test_reasoner_through_load_engine(tiny_reasoner_dir, monkeypatch):
    engine = load_engine(f"hf:{tiny_reasoner_dir}", "reasoner")
    assert isinstance(engine, HFEngine) and engine.spec == f"hf:{tiny_reasoner_dir}"
    assert load_engine(f"hf:{tiny_reasoner_dir}", "reasoner") is engine
    calls = _count_generate_calls(engine, monkeypatch)
    requests = [ChatRequest("What is 2 + 3?"), ChatRequest("A much longer question about three red circles?")]
    batched = engine.generate(requests, GREEDY)
    single = [engine.generate([r], GREEDY)[0] for r in requests]
    assert calls == [2, 1, 1]
    assert [c.text for c in batched] == [c.text for c in single]
    assert batched[1].prompt_tokens > batched[0].prompt_tokens > 0


def test_reasoner_rejects_only_the_request_with_an_image(tiny_reasoner_dir, monkeypatch):
    engine = HFEngine(str(tiny_reasoner_dir), role="reasoner")
    calls = _count_generate_calls(engine, monkeypatch)
    requests = [ChatRequest("first"), ChatRequest("look", image=_images()[0]), ChatRequest("third")]
    out = engine.generate(requests, GREEDY)
    assert isinstance(out[0], Completion) and isinstance(out[2], Completion)
    assert isinstance(out[1], EngineError) and "image" in str(out[1])
    assert calls == [2]


def test_missing_local_path_is_unavailable(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(BackendUnavailableError, match="no-such-model"):
        HFEngine(str(missing), role="captioner")
    with pytest.raises(BackendUnavailableError, match="does not exist"):
        load_engine(f"hf:{tmp_path / 'absent.gguf'}", "reasoner")


def test_unfetchable_hub_id_says_pass_a_local_directory():
    with pytest.raises(BackendUnavailableError) as info:
        HFEngine("Qwen/Qwen2.5-VL-7B-Instruct", role="captioner")
    message = str(info.value)
    assert "could not be fetched from the hub" in message
    assert "hf:/path/to/model" in message and "Qwen/Qwen2.5-VL-7B-Instruct" in message


def test_from_model_shares_parameters_and_restores_train_mode(captioner):
    wrapped = HFEngine.from_model(captioner.model, captioner.processor, role="captioner", spec="policy")
    assert wrapped.model is captioner.model
    assert all(a is b for a, b in zip(wrapped.model.parameters(), captioner.model.parameters()))
    requests = _caption_requests()[:2]
    captioner.model.train()
    try:
        out = wrapped.generate(requests, GREEDY)
        assert captioner.model.training, "generation must hand the model back in the mode it was in"
    finally:
        captioner.model.eval()
    assert [c.text for c in out] == [c.text for c in captioner.generate(requests, GREEDY)]
    assert repr(wrapped) == "HFEngine('policy')"


def test_from_model_rejects_a_tokenizer_as_captioner_processor(captioner):
    with pytest.raises(ValueError, match="image processor"):
        HFEngine.from_model(captioner.model, captioner.tokenizer, role="captioner")


def test_hub_layout_directory_loads_with_the_pil_fallback(tiny_captioner_dir, tmp_path):
    """A directory laid out like a hub Qwen2.5-VL snapshot: preprocessor_config.json, chat_template.json."""
    hub = tmp_path / "hub-like"
    hub.mkdir()
    for name in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ):
        shutil.copy(tiny_captioner_dir / name, hub / name)
    (hub / "chat_template.json").write_text(
        json.dumps({"chat_template": (tiny_captioner_dir / "chat_template.jinja").read_text()})
    )
    (hub / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "min_pixels": 3136,
                "max_pixels": 112 * 112,
                "patch_size": 14,
                "temporal_patch_size": 2,
                "merge_size": 2,
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
                "image_processor_type": "Qwen2VLImageProcessor",
                "processor_class": "Qwen2_5_VLProcessor",
            }
        )
    )
    processor = load_processor(hub)
    assert isinstance(processor, ImageOnlyQwen2_5_VLProcessor)
    engine = HFEngine(str(hub), role="captioner")
    big = Image.new("RGB", (224, 224), "red")
    small = Image.new("RGB", (112, 112), "red")
    out = engine.generate([ChatRequest("Describe.", image=big), ChatRequest("Describe.", image=small)], GREEDY)
    # this snapshot's max_pixels (112x112) was honoured: both images end up as 16 visual tokens
    assert out[0].prompt_tokens == out[1].prompt_tokens


@pytest.mark.slow
def test_smollm2_gguf_answers_simple_arithmetic(smollm2_gguf):
    engine = load_engine(f"hf:{smollm2_gguf}", "reasoner", cache=False)
    try:
        [answer] = engine.generate(
            [ChatRequest("What is 2+3? Answer with just the number.")],
            GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=16),
        )
        assert isinstance(answer, Completion), answer
        assert "5" in answer.text
        assert answer.completion_tokens <= 16 and answer.prompt_tokens > 10
    finally:
        engine.close()


def test_several_images_in_one_request_each_count_their_visual_tokens(captioner):
    small, large = Image.new("RGB", (112, 112), "red"), Image.new("RGB", (224, 224), "blue")
    one = captioner.generate([ChatRequest("Describe.", image=small)], GREEDY)[0]
    two = captioner.generate([ChatRequest("Describe.", images=(small, large)), ChatRequest("x", image=small)], GREEDY)
    assert isinstance(two[0], Completion) and isinstance(two[1], Completion)
    # the second image adds its 64 visual tokens (plus its vision start/end markers) to the same prompt
    assert two[0].prompt_tokens - one.prompt_tokens == 64 + 2


def test_a_request_the_processor_rejects_fails_alone(captioner, monkeypatch):
    calls = _count_generate_calls(captioner, monkeypatch)
    bad = Image.new("RGB", (4000, 2), "red")  # Qwen's resizer refuses an aspect ratio beyond 200:1
    out = captioner.generate(
        [_caption_requests()[0], ChatRequest("Describe.", image=bad), _caption_requests()[1]], GREEDY
    )
    assert isinstance(out[0], Completion) and isinstance(out[2], Completion)
    assert isinstance(out[1], EngineError) and "aspect ratio" in str(out[1]).lower()
    assert calls == [1, 1]  # the batch failed in the processor, then each request alone: the bad one never ran


def test_finish_reason_says_whether_the_budget_cut_the_output(tiny_reasoner_dir):
    engine = load_engine(f"hf:{tiny_reasoner_dir}", "reasoner")
    short = engine.generate([ChatRequest("Tell me a long story.")], GenerationConfig(0.0, 1.0, max_new_tokens=3))[0]
    assert short.finish_reason == "length" and short.completion_tokens == 3
    eos = engine.tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():  # make the model end at once: an output that stops on its own is "stop"
        engine.model.lm_head.bias = torch.nn.Parameter(torch.full((engine.model.config.vocab_size,), -1e4))
        engine.model.lm_head.bias[eos] = 1e4
    try:
        ended = engine.generate([ChatRequest("Hi")], GenerationConfig(0.0, 1.0, max_new_tokens=3))[0]
    finally:
        engine.model.lm_head.bias = None
    assert ended.finish_reason == "stop" and ended.completion_tokens == 1


def test_astream_yields_the_text_as_it_is_generated_then_the_completion(tiny_reasoner_dir):
    import asyncio

    engine = load_engine(f"hf:{tiny_reasoner_dir}", "reasoner")
    gen = GenerationConfig(0.0, 1.0, max_new_tokens=8)

    async def collect():
        return [piece async for piece in engine.astream(ChatRequest("What is 2 + 3?"), gen)]

    pieces = asyncio.run(collect())
    *texts, final = pieces
    assert isinstance(final, Completion) and len(texts) >= 2
    assert "".join(texts) == final.text == engine.generate([ChatRequest("What is 2 + 3?")], gen)[0].text


@pytest.mark.parametrize(
    "gen",
    [
        GenerationConfig(temperature=0.7, top_p=0.9, max_new_tokens=3),
        GenerationConfig(temperature=0.7, top_p=0.9, max_new_tokens=3, top_k=5, min_p=0.1, repetition_penalty=1.3),
        GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=3),
    ],
)
def test_exactly_the_given_sampling_applies_whatever_the_checkpoint_says(tiny_reasoner_dir, tmp_path, gen):
    """A checkpoint whose generation_config.json samples otherwise (Qwen2.5-VL-Instruct's repetition_penalty 1.05,
    a top_k) changes nothing: transformers' effective config is the GenerationConfig given, field by field."""
    path = tmp_path / "reasoner"
    shutil.copytree(tiny_reasoner_dir, path)
    config_file = path / "generation_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(
        json.dumps({**config, "repetition_penalty": 1.05, "top_k": 1, "top_p": 0.001, "min_p": 0.2})
    )
    engine = HFEngine(str(path), role="reasoner")
    assert engine.model.generation_config.repetition_penalty == 1.05
    effective = []
    real = engine.model.generate

    def spy(**kwargs):
        effective.append(engine.model._prepare_generation_config(None, **kwargs)[0])
        return real(**kwargs)

    engine.model.generate = spy
    (out,) = engine.generate([ChatRequest("hi")], gen)
    assert isinstance(out, Completion)
    (used,) = effective
    assert used.repetition_penalty == gen.repetition_penalty
    assert used.do_sample is not gen.greedy
    if not gen.greedy:
        assert (used.temperature, used.top_p) == (gen.temperature, gen.top_p)
        assert (used.top_k or 0, used.min_p or 0.0) == (gen.top_k, gen.min_p)
