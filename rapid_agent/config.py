"""The per-call configuration of the RAPID graph: which captioner and reasoner, which perception mode, how each
samples, which prompts. The compiled graph takes it as its LangGraph `context`, so swapping the reasoner is a
different `RapidContext`, never a rebuilt graph."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from rapid_agent.backends import CAPTIONER_DEFAULTS, REASONER_DEFAULTS, Engine, GenerationConfig, parse_spec
from rapid_agent.inputs import DEFAULT_MAX_PIXELS
from rapid_agent.perception import DEFAULT_MODE, check_mode
from rapid_agent.prompts import DEFAULT_PROMPTS, Prompts

#: the paper's models; both need a hub (or a local copy passed as `hf:/path`)
DEFAULT_CAPTIONER = "hf:Qwen/Qwen2.5-VL-7B-Instruct"
DEFAULT_REASONER = "hf:Qwen/Qwen3-8B"


@dataclass(frozen=True)
class RapidContext:
    """Everything a graph run needs besides the sample. Engine specs are checked here, loaded on first use."""

    captioner: Any = field(default=DEFAULT_CAPTIONER, metadata={"help": "captioner spec or Engine"})
    reasoner: Any = field(default=DEFAULT_REASONER, metadata={"help": "reasoner spec, Engine or BaseChatModel"})
    mode: str = field(default=DEFAULT_MODE, metadata={"help": "perception mode"})
    captioner_gen: GenerationConfig = field(default=CAPTIONER_DEFAULTS, metadata={"help": "captioner sampling"})
    reasoner_gen: GenerationConfig = field(default=REASONER_DEFAULTS, metadata={"help": "reasoner sampling"})
    prompts: Prompts = field(default=DEFAULT_PROMPTS, metadata={"help": "prompt templates"})
    max_pixels: int = field(default=DEFAULT_MAX_PIXELS, metadata={"help": "downscale larger images to this"})
    answer_timeout_s: float = field(default=5.0, metadata={"help": "bound on answer verification per sample"})

    def __post_init__(self) -> None:
        check_mode(self.mode)
        for name in ("captioner", "reasoner"):
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    parse_spec(value)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
            elif value is None or (name == "captioner" and not isinstance(value, Engine)):
                raise TypeError(f"{name}: expected a spec string or an Engine, got {type(value).__name__}")
        for name in ("captioner_gen", "reasoner_gen"):
            if not isinstance(getattr(self, name), GenerationConfig):
                raise TypeError(f"{name}: expected a GenerationConfig, got {type(getattr(self, name)).__name__}")
        if self.max_pixels < 28 * 28:
            raise ValueError(f"max_pixels must be at least {28 * 28}, got {self.max_pixels!r}")

    def replace(self, **changes: Any) -> RapidContext:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown RapidContext field(s): {sorted(unknown)}")
        return RapidContext(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})
