"""Caption judges: does a captioner output hold a genuine description of the image, or only an answer?

VPO penalises correct outputs that reach the answer without describing the image (the captioner would otherwise
learn to hand the reasoner a bare answer). The paper asks the policy itself; so do we, with our own few-shot yes/no
prompt, greedy and a few tokens long. `PolicyJudge` asks the model being trained (through TRL's unwrapping, so it
also works under DDP and DeepSpeed ZeRO-3), `EngineJudge` asks any engine. An empty caption is judged without a
model; a reply that says neither yes nor no counts as genuine (no penalty) and is counted as unparsed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rapid_agent.backends import ChatRequest, Engine, GenerationConfig, load_engine
from rapid_agent.backends.batching import get_batcher

JUDGE_PROMPT = """Decide whether a text describes the contents of an image, or only states an answer or a solution \
without describing anything that can be seen. Reply with one word: yes if it describes the image, no otherwise.

Text: A bar chart with four bars; the tallest, labelled 2019, reaches 40 and the shortest, 2016, reaches 15.
Describes the image: yes

Text: The answer is \\boxed{{C}}.
Describes the image: no

Text: Two red circles on the left, one blue square at the top right, and a green triangle below it.
Describes the image: yes

Text: Using the formula, 3 * 4 = 12, so the result is 12.
Describes the image: no

Text: {caption}
Describes the image:"""

_VERDICT = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def judge_request(caption: str) -> ChatRequest:
    return ChatRequest(JUDGE_PROMPT.format(caption=caption.strip()))


def parse_verdict(reply: str) -> bool | None:
    """True for yes, False for no, None when the reply says neither (its first yes/no word decides)."""
    match = _VERDICT.search(reply)
    return None if match is None else match.group(1).lower() == "yes"


class CaptionJudge:
    """Call with captions; get True (genuine), False (not), or None (the judge's reply was unreadable) for each."""

    def __init__(self, *, max_new_tokens: int = 4) -> None:
        self.gen = GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens)

    def __call__(self, captions: Sequence[str | None]) -> list[bool | None]:
        asked = [i for i, c in enumerate(captions) if c and c.strip()]
        replies = self._generate([judge_request(captions[i]) for i in asked])
        out: list[bool | None] = [False] * len(captions)
        for i, reply in zip(asked, replies):
            out[i] = None if isinstance(reply, Exception) else parse_verdict(reply.text)
        return out

    def _generate(self, requests: list[ChatRequest]) -> list[Any]:
        raise NotImplementedError


class EngineJudge(CaptionJudge):
    """A judge behind any engine (a spec string or an `Engine`), called through its micro-batcher. `options` are
    the engine's options (`load_engine`), e.g. `device_map="auto"` for a large `hf:` judge."""

    def __init__(self, engine: str | Engine, *, options: dict | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = load_engine(engine, "reasoner", **(options or {}))

    def _generate(self, requests: list[ChatRequest]) -> list[Any]:
        return get_batcher(self.engine).submit_many(requests, self.gen) if requests else []


class PolicyJudge(CaptionJudge):
    """The policy being trained judges its own captions. Bind it to the trainer once the trainer exists.

    Every process enters the unwrapping context on every call, even with nothing to judge, because gathering
    ZeRO-3 parameters is a collective operation.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trainer: Any = None

    def bind(self, trainer: Any) -> PolicyJudge:
        self.trainer = trainer
        return self

    def _generate(self, requests: list[ChatRequest]) -> list[Any]:
        from trl.models.utils import unwrap_model_for_generation

        from rapid_agent.backends.hf import HFEngine

        if self.trainer is None:
            raise RuntimeError("PolicyJudge is not bound to a trainer; call judge.bind(trainer) first")
        trainer = self.trainer
        with unwrap_model_for_generation(
            trainer.model_wrapped, trainer.accelerator, gather_deepspeed3_params=trainer.args.ds3_gather_for_generation
        ) as model:
            if not requests:
                return []
            engine = HFEngine.from_model(model, trainer.processing_class, role="captioner", spec="policy")
            return engine.generate(requests, self.gen)


def build_judge(
    spec: str | Engine | None, *, max_new_tokens: int = 4, options: dict | None = None
) -> CaptionJudge | None:
    """'policy' -> PolicyJudge (bind it later), 'off'/None -> no judge, anything else -> EngineJudge."""
    if spec is None or spec == "off":
        return None
    if spec == "policy":
        return PolicyJudge(max_new_tokens=max_new_tokens)
    return EngineJudge(spec, max_new_tokens=max_new_tokens, options=options)
