"""The graph's nodes: perceive (captioner tool), reason (hot-swappable reasoner), score (answer check).

Each node is an async function `state -> partial state` reading its engines and mode from the run's context, so
one compiled graph serves any captioner/reasoner pair. An engine failure is recorded in `errors` and ends that
sample's run; it never raises out of the graph.
"""

from __future__ import annotations

import asyncio
import time

from langgraph.runtime import get_runtime

from rapid_agent.answers import check_answer
from rapid_agent.backends import ChatRequest, EngineError, load_engine
from rapid_agent.backends.batching import get_batcher
from rapid_agent.config import RapidContext
from rapid_agent.graphs.state import RapidState
from rapid_agent.inputs import Sample
from rapid_agent.perception import Perception, check_mode, reasoner_prompt
from rapid_agent.tools import make_captioner_tool


def _context() -> RapidContext:
    context = get_runtime(RapidContext).context
    return context if context is not None else RapidContext()


async def perceive(state: RapidState) -> dict:
    context = _context()
    mode = check_mode(context.mode)
    sample = Sample.model_validate(
        {k: state[k] for k in ("question", "image", "answer", "choices", "id") if state.get(k) is not None},
        context={"max_pixels": context.max_pixels},
    )
    update: dict = {**sample.model_dump(), "mode": mode, "caption": None, "solution": None}
    if mode == "none":
        return update | {"captioner_output": None}
    if sample.image is None:
        raise ValueError(f"image: required by perception mode {mode!r} (only mode 'none' runs without one)")
    engine = load_engine(context.captioner, "captioner")
    tool = make_captioner_tool(
        engine, mode=mode, gen=context.captioner_gen, prompts=context.prompts, max_pixels=context.max_pixels
    )
    try:
        out = await tool.ainvoke({"image": sample.image, "question": sample.question})
    except EngineError as exc:
        return update | {"engines": {"captioner": engine.spec}, "errors": [f"captioner: {exc}"]}
    return update | {
        "captioner_output": out["text"],
        "caption": out["caption"],
        "solution": out["solution"],
        "engines": {"captioner": engine.spec},
        "metrics": {
            "captioner_latency_s": out["latency_s"],
            "captioner_prompt_tokens": out["prompt_tokens"],
            "captioner_completion_tokens": out["completion_tokens"],
        },
    }


async def reason(state: RapidState) -> dict:
    context = _context()
    engine = load_engine(context.reasoner, "reasoner")
    perception = Perception(state.get("caption"), state.get("solution"))
    prompt = reasoner_prompt(state["question"], perception, state["mode"], context.prompts)
    request = ChatRequest(prompt=prompt, system=context.prompts.system)
    started = time.perf_counter()
    try:
        out = await get_batcher(engine).asubmit(request, context.reasoner_gen)
    except EngineError as exc:
        return {"reasoner_prompt": prompt, "engines": {"reasoner": engine.spec}, "errors": [f"reasoner: {exc}"]}
    return {
        "reasoner_prompt": prompt,
        "reasoner_output": out.text,
        "engines": {"reasoner": engine.spec},
        "metrics": {
            "reasoner_latency_s": out.latency_s or time.perf_counter() - started,
            "reasoner_prompt_tokens": out.prompt_tokens,
            "reasoner_completion_tokens": out.completion_tokens,
        },
    }


async def score(state: RapidState) -> dict:
    context = _context()
    # math-verify is CPU-bound; off the event loop so that other samples keep flowing
    verdict = await asyncio.to_thread(
        check_answer,
        state["reasoner_output"],
        state["answer"],
        choices=state.get("choices") or (),
        timeout_s=context.answer_timeout_s,
    )
    return {"prediction": verdict.prediction, "correct": verdict.correct, "verdict": verdict.reason}
