"""Stronger reasoners for the same captions: the world's exact solver, and a reasoner voting over samples.

RAPID's scaling claim is that the captions a captioner learned to write serve a stronger reasoner without any
retraining. The demo has no stronger LLM offline, so it brings two:

- `WorldSolver`: reads the counts from the reasoner prompt's perception text with the world's own parser and does
  the operation the question names (`rapid_agent.world.answer_from_text`). It reasons perfectly from whatever the
  text states: the upper bound any reasoner reaches from these captions.
- `MajorityVote`: any engine sampled `k` times per request (seeds `0..k-1`), answering with the most common
  extracted answer (ties go to the answer seen first): self-consistency over the same reasoner.

Both are `Engine`s, so they run through the graph like any reasoner.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Sequence

from rapid_agent.answers import extract_answer
from rapid_agent.backends import ChatRequest, Completion, Engine, GenerationConfig
from rapid_agent.world import answer_from_text

_QUESTION = re.compile(r"^Question:\s*(.+)$", re.MULTILINE)


class WorldSolver(Engine):
    """Answers a world question from the perception text of a reasoner prompt, exactly; says so when it cannot."""

    spec = "world-solver"
    max_batch_size = 1024

    def generate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        out: list[Completion | Exception] = []
        for request in requests:
            found = list(_QUESTION.finditer(request.prompt))
            if not found:
                out.append(ValueError(f"{self.spec}: no 'Question:' line in the prompt"))
                continue
            question = found[-1]
            answer = answer_from_text(request.prompt[: question.start()], question.group(1))
            text = f"\\boxed{{{answer}}}" if answer is not None else "The text does not say."
            out.append(Completion(text, prompt_tokens=len(request.prompt.split()), finish_reason="stop"))
        return out


class MajorityVote(Engine):
    """`engine` asked `k` times per request with seeds 0..k-1 (a seed in `gen` offsets them); the most common
    answer wins. The completion's text is the winning answer boxed; `meta["votes"]` holds every answer."""

    def __init__(self, engine: Engine, k: int) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        self.engine, self.k = engine, k
        self.spec = f"{engine.spec} (majority of {k})"
        self.max_batch_size = engine.max_batch_size

    def generate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        offset = (gen.seed or 0) * self.k
        votes: list[list[str]] = [[] for _ in requests]
        tokens = [0] * len(requests)
        failure: list[Exception | None] = [None] * len(requests)
        for i in range(self.k):
            outs = self.engine.generate(requests, dataclasses.replace(gen, seed=offset + i))
            for j, out in enumerate(outs):
                if isinstance(out, Exception):
                    failure[j] = out
                    continue
                tokens[j] += out.completion_tokens
                answer, _ = extract_answer(out.text)
                if answer is not None:
                    votes[j].append(answer)
        results: list[Completion | Exception] = []
        for j in range(len(requests)):
            if not votes[j] and failure[j] is not None:
                results.append(failure[j])
                continue
            winner = Counter(votes[j]).most_common(1)[0][0] if votes[j] else None
            text = f"\\boxed{{{winner}}}" if winner is not None else "No answer."
            results.append(
                Completion(text, completion_tokens=tokens[j], finish_reason="stop", meta={"votes": votes[j]})
            )
        return results
