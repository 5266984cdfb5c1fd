"""The graph's nodes: perceive (captioner tool), reason (hot-swappable reasoner), score (answer check).

Score checks the reasoner's output, or in mode `direct` (the captioner answering alone) the captioner's.

Each node is an async function `state -> partial state` reading its engines and mode from the run's context, so
one compiled graph serves any captioner/reasoner pair. An engine failure is recorded in `errors` and ends that
sample's run; it never raises out of the graph. Requests go through each engine's micro-batcher, except when the
context asks to stream: then each request goes to its engine alone and its text is written to LangGraph's custom
stream as it is generated. An answer check that could not run at all (`correct=None`) is recorded in `errors` too.

Nothing that blocks runs on the event loop (`langgraph dev` serves every run from one loop and fails a run that
blocks it): loading an engine (imports, weights), reading, decoding and resizing images, and extracting answers go
to worker threads, answer checks that need math-verify to worker processes. What costs microseconds stays on the
loop, where a thread hop would cost more than the work: validating a sample without images, finding an engine
loaded already, planning the check of a short output.

Each node reads its context from the LangGraph run, or takes it as an argument: `batch.py` drives the same nodes
without a LangGraph run.
"""

from __future__ import annotations

import asyncio
import time

from langgraph.config import get_stream_writer
from langgraph.runtime import get_runtime

from rapid_agent.answers import acheck_answer, extract_answer
from rapid_agent.backends import ChatRequest, Completion, Engine, EngineError, GenerationConfig, aload_engine
from rapid_agent.backends.batching import get_batcher, malformed, traced
from rapid_agent.config import RapidContext
from rapid_agent.graphs.state import RapidState
from rapid_agent.inputs import Sample
from rapid_agent.perception import (
    Perception,
    answer_key,
    captioner_request,
    check_mode,
    reasoner_request,
    split_output,
)

#: the state keys that make up the sample
SAMPLE_KEYS = ("question", "image", "images", "answer", "choices", "id")


def _context(given: RapidContext | None = None) -> RapidContext:
    """The run's context: `given` (the batch runner passes it), else the one the LangGraph run carries."""
    if given is not None:
        return given
    context = get_runtime(RapidContext).context
    return context if context is not None else RapidContext()


async def _generate(
    engine: Engine, request: ChatRequest, gen: GenerationConfig, role: str, stream: bool
) -> Completion:
    """One request: through the engine's micro-batcher, or streamed piece by piece to LangGraph's custom stream."""
    if not stream:
        return await get_batcher(engine).asubmit(request, gen)
    write = get_stream_writer()
    async for piece in traced(engine).astream(request, gen):
        if isinstance(piece, Completion):
            error = malformed(engine, piece)
            if error is not None:
                raise error
            return piece
        write({"role": role, "text": piece})
    raise EngineError(f"{engine.spec}: the stream ended without a completion")


async def perceive(state: RapidState, context: RapidContext | None = None) -> dict:
    context = _context(context)
    mode = check_mode(context.mode)
    given = state.get("captioner_output")
    data = {k: state[k] for k in SAMPLE_KEYS if state.get(k) is not None}
    if given is not None or mode == "none":
        data.pop("image", None), data.pop("images", None)  # not looked at: no need to decode them
    limits = {"max_pixels": context.max_pixels, "max_question_chars": context.max_question_chars}
    if "image" in data or "images" in data:  # reads and decodes the images: off the loop
        sample = await asyncio.to_thread(Sample.model_validate, data, context=limits)
    else:  # nothing to read: a thread hop would cost more than the validation itself
        sample = Sample.model_validate(data, context=limits)
    update: dict = {**sample.model_dump(exclude={"images"}), "mode": mode, "caption": None, "solution": None}
    if given is not None:  # a perception computed earlier (an eval's cache, a VPO sample): no captioner call
        return update | _perception(mode, given)
    if mode == "none":
        return update | {"captioner_output": None, "perception_missing": []}
    if not sample.images:
        raise ValueError(f"image: required by perception mode {mode!r} (only mode 'none' runs without one)")
    if context.captioner is None:
        raise ValueError("captioner: none configured, and the sample carries no captioner_output")
    engine = await aload_engine(context.captioner, "captioner", **context.captioner_options)
    # decodes and resizes the images: off the loop
    request = await asyncio.to_thread(
        captioner_request, sample.images, sample.question, mode, context.prompts, context.max_pixels
    )
    try:
        out = await _generate(engine, request, context.captioner_gen, "captioner", context.stream)
    except EngineError as exc:
        return update | {"engines": {"captioner": engine.spec}, "errors": [f"captioner: {exc}"]}
    return (
        update
        | _perception(mode, out.text)
        | {
            "engines": {"captioner": engine.spec},
            "metrics": {
                "captioner_latency_s": out.latency_s,
                "captioner_prompt_tokens": out.prompt_tokens,
                "captioner_completion_tokens": out.completion_tokens,
            },
        }
    )


def _perception(mode: str, text: str) -> dict:
    parts = split_output(mode, text)
    return {
        "captioner_output": text,
        "caption": parts.caption,
        "solution": parts.solution,
        "perception_missing": parts.missing(mode),
    }


async def reason(state: RapidState, context: RapidContext | None = None) -> dict:
    context = _context(context)
    engine = await aload_engine(context.reasoner, "reasoner", **context.reasoner_options)
    perception = Perception(state.get("caption"), state.get("solution"))
    request = reasoner_request(state["question"], perception, state["mode"], context.prompts)
    started = time.perf_counter()
    try:
        out = await _generate(engine, request, context.reasoner_gen, "reasoner", context.stream)
    except EngineError as exc:
        return {
            "reasoner_prompt": request.prompt,
            "engines": {"reasoner": engine.spec},
            "errors": [f"reasoner: {exc}"],
        }
    return {
        "reasoner_prompt": request.prompt,
        "reasoner_output": out.text,
        "reasoner_finish_reason": out.finish_reason,
        "engines": {"reasoner": engine.spec},
        "metrics": {
            "reasoner_latency_s": out.latency_s or time.perf_counter() - started,
            "reasoner_prompt_tokens": out.prompt_tokens,
            "reasoner_completion_tokens": out.completion_tokens,
        },
    }


async def score(state: RapidState, context: RapidContext | None = None) -> dict:
    context = _context(context)
    choices = state.get("choices") or ()
    output = state[answer_key(state["mode"])]
    if state.get("answer") is None:  # nothing to check against: read the answer only
        prediction, _ = await asyncio.to_thread(
            extract_answer,
            output,
            choices=choices,
            final_box_only=context.strict_answers,
            timeout_s=context.answer_timeout_s,
        )
        return {"prediction": prediction}
    # hard cases go to a worker process that a timeout really ends; the event loop keeps serving other samples
    verdict = await acheck_answer(
        output,
        state["answer"],
        choices=choices,
        timeout_s=context.answer_timeout_s,
        final_box_only=context.strict_answers,
        finish_reason=state.get("reasoner_finish_reason"),
    )
    if verdict.correct is None:  # the check could not run (an infrastructure failure): an error, not a wrong answer
        return {
            "prediction": verdict.prediction,
            "correct": None,
            "verdict": verdict.reason,
            "errors": [f"answer check: {verdict.reason}"],
        }
    return {"prediction": verdict.prediction, "correct": verdict.correct, "verdict": verdict.reason}
