"""Perception modes: what the captioner is asked for (its whole request), how its output splits into caption and
tentative solution, and how those parts become the reasoner's request.

    none      the reasoner sees only the question (text-only baseline)
    cap       a generic caption of the image
    qcap      a caption of what the question needs
    sol       a tentative solution
    cap+sol   caption and solution from one captioner call
    qcap+sol  query-related caption and solution from one call (the paper's default)
    direct    no reasoner: the captioner answers the question itself, and its output is scored as the answer (the
              end-to-end baseline; not in `MODES`, which lists the modes that feed a reasoner)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from rapid_agent.backends.base import ChatRequest
from rapid_agent.inputs import DEFAULT_MAX_PIXELS, load_image
from rapid_agent.prompts import DEFAULT_PROMPTS, Prompts

Mode = Literal["none", "cap", "qcap", "sol", "cap+sol", "qcap+sol", "direct"]
#: the captioner answering alone: no reasoner call, the captioner's output goes straight to the answer check
DIRECT = "direct"
#: the modes whose perception a reasoner reads
MODES: tuple[str, ...] = tuple(m for m in get_args(Mode) if m != DIRECT)
DEFAULT_MODE: Mode = "qcap+sol"


def check_mode(mode: str) -> Mode:
    if mode not in MODES and mode != DIRECT:
        raise ValueError(f"unknown perception mode {mode!r}; choose one of {', '.join((*MODES, DIRECT))}")
    return mode  # type: ignore[return-value]


def answer_key(mode: str) -> str:
    """The state key holding the text the answer check reads: the reasoner's output, or in mode `direct` the
    captioner's."""
    return "captioner_output" if check_mode(mode) == DIRECT else "reasoner_output"


def has_caption(mode: str) -> bool:
    return check_mode(mode) in ("cap", "qcap", "cap+sol", "qcap+sol")


def has_solution(mode: str) -> bool:
    return check_mode(mode) in ("sol", "cap+sol", "qcap+sol")


def captioner_prompt(mode: str, question: str, prompts: Prompts = DEFAULT_PROMPTS) -> str | None:
    """The captioner's prompt for `mode`, or None when the mode needs no perception."""
    mode = check_mode(mode)
    if mode == "none":
        return None
    if mode == DIRECT:
        return prompts.direct_answer.format(question=question)
    caption = prompts.caption if mode.startswith("cap") else prompts.query_caption.format(question=question)
    if mode in ("cap", "qcap"):
        return caption
    if mode == "sol":
        return prompts.solution.format(question=question)
    return prompts.caption_and_solution.format(caption_instruction=caption, question=question)


@dataclass(frozen=True)
class Perception:
    """The captioner's output split into its parts; either part is None when the mode does not produce it or the
    captioner did not write it."""

    caption: str | None
    solution: str | None

    def missing(self, mode: str) -> list[str]:
        """The parts `mode` asks for that the captioner did not write ("caption", "solution")."""
        out = []
        if has_caption(mode) and not (self.caption or "").strip():
            out.append("caption")
        if has_solution(mode) and not (self.solution or "").strip():
            out.append("solution")
        return out


_TAG = r"<{0}>(.*?)(?:</{0}>|$)"


def _tagged(text: str, tag: str) -> str | None:
    match = re.search(_TAG.format(tag), text, flags=re.DOTALL | re.IGNORECASE)
    return match.group(1).strip() if match else None


def split_output(mode: str, text: str | None) -> Perception:
    """Split a captioner output per `mode`. Combined modes read the <caption>/<solution> tags; when the model
    ignored them, the text before a solution tag (or all of it) counts as the caption and the solution is None."""
    mode = check_mode(mode)
    text = (text or "").strip()
    if mode in ("none", DIRECT):  # a direct output is the answer itself, no perception for a reasoner
        return Perception(None, None)
    if mode in ("cap", "qcap"):
        return Perception(_tagged(text, "caption") or text or None, None)
    if mode == "sol":
        return Perception(None, _tagged(text, "solution") or text or None)
    caption = _tagged(text, "caption")
    solution = _tagged(text, "solution")
    if caption is None:
        caption = re.split(r"<solution>", text, maxsplit=1, flags=re.IGNORECASE)[0].strip() or None
    return Perception(caption, solution)


def reasoner_prompt(question: str, perception: Perception, mode: str, prompts: Prompts = DEFAULT_PROMPTS) -> str:
    """The reasoner's user prompt: caption (with its warning), question, tentative solution (with its warning)."""
    mode = check_mode(mode)
    if mode == "none":
        return prompts.direct_answer.format(question=question)
    missing = perception.missing(mode)
    caption_block = solution_block = ""
    if has_caption(mode):
        caption = prompts.missing_caption if "caption" in missing else perception.caption
        caption_block = prompts.caption_block.format(caption=caption)
    if has_solution(mode):
        solution = prompts.missing_solution if "solution" in missing else perception.solution
        solution_block = prompts.solution_block.format(solution=solution)
    return prompts.reason.format(
        caption_block=caption_block,
        question=question,
        solution_block=solution_block,
        instruction=prompts.reason_instruction,
    )


def captioner_request(
    images: Sequence[Any],
    question: str,
    mode: str,
    prompts: Prompts = DEFAULT_PROMPTS,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> ChatRequest:
    """The captioner's request for `images` (in order) and `question` under `mode`: what the perceive node and the
    captioner tool send, built in this one place. Images are decoded and downscaled here (`load_image`)."""
    prompt = captioner_prompt(mode, question, prompts)
    if prompt is None:
        raise ValueError("perception mode 'none' uses no captioner")
    return ChatRequest(prompt=prompt, images=tuple(load_image(i, max_pixels=max_pixels) for i in images))


def reasoner_request(
    question: str, perception: Perception, mode: str, prompts: Prompts = DEFAULT_PROMPTS
) -> ChatRequest:
    """The reasoner's whole request (system message and prompt): what the graph, the VPO reward and the benchmarks
    send, built in this one place."""
    return ChatRequest(reasoner_prompt(question, perception, mode, prompts), system=prompts.system)
