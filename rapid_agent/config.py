"""The per-call configuration of the RAPID graph: which captioner and reasoner (and their engine options), which
perception mode, how each samples, which prompts. The compiled graph takes it as its LangGraph `context`, so
swapping the reasoner is a different `RapidContext`, never a rebuilt graph."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from rapid_agent.backends import CAPTIONER_DEFAULTS, REASONER_DEFAULTS, Engine, GenerationConfig, parse_spec
from rapid_agent.inputs import DEFAULT_MAX_PIXELS, DEFAULT_MAX_QUESTION_CHARS
from rapid_agent.perception import DEFAULT_MODE, check_mode
from rapid_agent.prompts import DEFAULT_PROMPTS, Prompts

#: the paper's models; both need a hub (or a local copy passed as `hf:/path`)
DEFAULT_CAPTIONER = "hf:Qwen/Qwen2.5-VL-7B-Instruct"
DEFAULT_REASONER = "hf:Qwen/Qwen3-8B"
#: how a graph run checks answers unless told (`RapidContext.strict_answers`): the answer is read wherever
#: math-verify finds it, as evaluation reads benchmarks (and the demo, `DemoConfig`). The reasoner's sampling
#: defaults are `REASONER_DEFAULTS` (rapid_agent.backends), reused by `VPOConfig`.
STRICT_ANSWERS = False
#: how training checks them unless told (`VPOConfig.strict_answers`, the VPO reward): the paper's parse, only the
#: final \boxed{} after the reasoning and a truncated output wrong. It departs from `STRICT_ANSWERS` on purpose: the
#: reward is what the paper rewards, while evaluation reads answers as benchmarks are read.
TRAINING_STRICT_ANSWERS = True


@dataclass(frozen=True)
class RapidContext:
    """Everything a graph run needs besides the sample. Engine specs are checked here, loaded on first use."""

    captioner: Any = field(
        default=DEFAULT_CAPTIONER,
        metadata={
            "help": "captioner spec (hf:, vllm:, openai:<model>@<url>) or Engine; None when samples carry "
            "their perception (`captioner_output`)"
        },
    )
    reasoner: Any = field(
        default=DEFAULT_REASONER,
        metadata={"help": "reasoner spec, Engine or LangChain chat model; None stops after perception"},
    )
    mode: str = field(default=DEFAULT_MODE, metadata={"help": "perception mode"})
    captioner_gen: GenerationConfig = field(default=CAPTIONER_DEFAULTS, metadata={"help": "captioner sampling"})
    reasoner_gen: GenerationConfig = field(
        default=REASONER_DEFAULTS,
        metadata={
            "help": "reasoner sampling (default `REASONER_DEFAULTS`, the paper's Qwen3 settings, which VPOConfig's "
            "reasoner_* fields also default to)"
        },
    )
    captioner_options: Mapping[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "captioner engine options, e.g. device_map=auto (hf), tensor_parallel_size=2 (vllm), "
            "timeout_s=600 (openai)"
        },
    )
    reasoner_options: Mapping[str, Any] = field(
        default_factory=dict,
        metadata={"help": "reasoner engine options, e.g. max_concurrency=256 or extra_body={...} (openai)"},
    )
    prompts: Prompts = field(default=DEFAULT_PROMPTS, metadata={"help": "prompt templates"})
    max_pixels: int = field(default=DEFAULT_MAX_PIXELS, metadata={"help": "downscale larger images to this"})
    max_question_chars: int = field(
        default=DEFAULT_MAX_QUESTION_CHARS, metadata={"help": "refuse questions longer than this"}
    )
    answer_timeout_s: float = field(default=5.0, metadata={"help": "bound on answer verification per sample"})
    strict_answers: bool = field(
        default=STRICT_ANSWERS,
        metadata={
            "help": "score only the final \\boxed{} after the reasoning, and truncated outputs as wrong (the paper's "
            "parse, VPOConfig's default for training); off by default: the answer is read as evaluation reads it"
        },
    )
    stream: bool = field(
        default=False,
        metadata={
            "help": "stream each model's text as it is generated (LangGraph stream_mode='custom'); requests "
            "then go to the engines one by one instead of batched"
        },
    )

    def __post_init__(self) -> None:
        check_mode(self.mode)
        # a context sent as JSON (LangGraph's servers and Studio pass the assistant's context as a dict) holds plain
        # dicts where settings objects go
        for name, cls in (
            ("captioner_gen", GenerationConfig),
            ("reasoner_gen", GenerationConfig),
            ("prompts", Prompts),
        ):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                try:
                    object.__setattr__(self, name, cls(**value))
                except TypeError as exc:
                    raise TypeError(f"{name}: {exc}") from None
        for name in ("captioner", "reasoner"):
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    parse_spec(value)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
            elif value is not None and name == "captioner" and not isinstance(value, Engine):
                raise TypeError(f"{name}: expected a spec string, an Engine or None, got {type(value).__name__}")
        for name in ("captioner_gen", "reasoner_gen"):
            if not isinstance(getattr(self, name), GenerationConfig):
                raise TypeError(f"{name}: expected a GenerationConfig, got {type(getattr(self, name)).__name__}")
        for name in ("captioner_options", "reasoner_options"):
            value = getattr(self, name)
            if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                raise TypeError(f"{name}: expected a mapping of option names to values, got {value!r}")
        if self.max_pixels < 28 * 28:
            raise ValueError(f"max_pixels must be at least {28 * 28}, got {self.max_pixels!r}")
        if self.max_question_chars < 1:
            raise ValueError(f"max_question_chars must be >= 1, got {self.max_question_chars!r}")
        if not self.answer_timeout_s > 0:
            raise ValueError(f"answer_timeout_s must be > 0, got {self.answer_timeout_s!r}")

    def replace(self, **changes: Any) -> RapidContext:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown RapidContext field(s): {sorted(unknown)}")
        return RapidContext(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})
