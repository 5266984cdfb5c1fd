"""One served model name: a RAPID pipeline (captioner + reasoner + mode) whose engines are resolved once, and the
ways a request runs through the compiled graph.

`answer` is one graph run (its nodes driven directly, `graphs/batch.py`, unless tracing or a run config needs a
LangGraph run): concurrent requests meet in the engines' micro-batchers, so N requests in flight cost about one
engine call per role. A streamed request runs in two graph calls, so that batching survives
streaming and a perception failure is known before the first byte goes out: `perceive` first (the graph stops after
perception when the context has no reasoner; batched like any request; its text is not the answer), then `stream`
runs the answering model with `RapidContext(stream=True)` on the given perception (a sample carrying
`captioner_output` skips the captioner), whose pieces the client receives as they are written. An answering engine
that cannot stream runs batched and its answer arrives as one piece; a pipeline without a reasoner answers with the
perception itself, in one piece.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from rapid_agent.backends import Engine, GenerationConfig, load_engine
from rapid_agent.config import RapidContext
from rapid_agent.graphs import get_graph
from rapid_agent.graphs.batch import arun, direct_handlers
from rapid_agent.serve.config import generation_for_request
from rapid_agent.serve.protocol import ChatCompletionRequest


class Pipeline:
    """A named RapidContext with its engines loaded. The answer is the reasoner's output, or the captioner's when
    the pipeline has no reasoner (a perception server)."""

    def __init__(self, name: str, context: RapidContext, *, run_config: Mapping[str, Any] | None = None) -> None:
        engines: dict[str, Engine] = {}
        for role in ("captioner", "reasoner"):
            spec = getattr(context, role)
            if spec is not None:
                engines[role] = load_engine(spec, role, **getattr(context, f"{role}_options"))
        if not engines:
            raise ValueError(f"pipeline {name!r}: needs a captioner or a reasoner")
        if context.mode != "none" and "captioner" not in engines:
            raise ValueError(f"pipeline {name!r}: perception mode {context.mode!r} needs a captioner")
        self.name = name
        self.engines = engines
        # streaming is the request's choice (`stream: true`), never the pipeline's: plain requests must batch
        self.context = context.replace(
            captioner=engines.get("captioner"), reasoner=engines.get("reasoner"), stream=False
        )
        self.answering_role = "reasoner" if "reasoner" in engines else "captioner"
        #: whether a request runs the captioner (every mode but 'none'; __init__ made sure there is one)
        self.perceives = context.mode != "none"
        #: whether a streamed answer arrives piece by piece (only the reasoner's does: perception comes first)
        self.streams = self.answering_role == "reasoner" and engines["reasoner"].streams
        self.run_config = dict(run_config or {})

    def describe(self) -> dict[str, str | None]:
        return {
            "captioner": self.engines["captioner"].spec if "captioner" in self.engines else None,
            "reasoner": self.engines["reasoner"].spec if "reasoner" in self.engines else None,
            "mode": self.context.mode,
        }

    def context_for(self, request: ChatCompletionRequest) -> RapidContext:
        """The pipeline's context with the request's sampling applied to the answering model."""
        field = f"{self.answering_role}_gen"
        gen: GenerationConfig = getattr(self.context, field)
        changed = generation_for_request(
            gen,
            max_tokens=request.token_limit,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
        )
        return self.context if changed is gen else self.context.replace(**{field: changed})

    def answer_text(self, state: Mapping[str, Any]) -> str:
        key = "reasoner_output" if self.answering_role == "reasoner" else "captioner_output"
        return state.get(key) or ""

    async def answer(self, sample: dict, context: RapidContext) -> dict:
        """The final state of one graph run."""
        return await self._run(sample, context)

    async def perceive(self, sample: dict, context: RapidContext) -> dict:
        """The final state of the perception run alone (no reasoner: the graph stops after perceive)."""
        return await self._run(sample, context.replace(reasoner=None))

    async def _run(self, sample: dict, context: RapidContext) -> dict:
        """The graph's nodes driven directly (`graphs/batch.py`, the same final state) when nothing needs a LangGraph
        run (no run config, no callback handler but tracing's, which it drives itself), else the compiled graph."""
        handlers = None if self.run_config else direct_handlers(context)
        if handlers is not None:
            return await arun(sample, context, handlers)
        return await get_graph().ainvoke(sample, self.run_config, context=context)

    async def stream(
        self, sample: dict, context: RapidContext, perceived: Mapping[str, Any] | None = None
    ) -> AsyncIterator[str | dict]:
        """The answer's text pieces as they are written, then the final state (a dict). `perceived` is the state
        `perceive` returned for this sample, when the pipeline perceives (`self.perceives`)."""
        graph = get_graph()
        if perceived is not None:
            if self.answering_role == "captioner":  # the perception is the answer
                if self.answer_text(perceived):
                    yield self.answer_text(perceived)
                yield dict(perceived)
                return
            keep = ("question", "answer", "choices", "id")
            sample = {k: sample[k] for k in keep if sample.get(k) is not None}
            sample["captioner_output"] = perceived.get("captioner_output") or ""
        if not self.streams:
            final = await self._run(sample, context)
            if self.answer_text(final):
                yield self.answer_text(final)
            yield _merged(perceived or {}, final)
            return
        final = {}
        async for kind, chunk in graph.astream(
            sample, self.run_config, context=context.replace(stream=True), stream_mode=["custom", "values"]
        ):
            if kind == "values":
                final = chunk
            elif chunk.get("role") == self.answering_role and chunk.get("text"):
                yield chunk["text"]
        yield _merged(perceived or {}, final)


def _merged(perceived: Mapping[str, Any], final: Mapping[str, Any]) -> dict:
    """The answering run's state with the perception run's engines and metrics (it carried the captioner's)."""
    merged = dict(final)
    for key in ("engines", "metrics"):
        merged[key] = {**(perceived.get(key) or {}), **(final.get(key) or {})}
    return merged
