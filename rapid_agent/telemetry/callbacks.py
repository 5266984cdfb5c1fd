"""Graph runs, nodes and tool calls as spans: `OTelCallbackHandler` is a LangChain callback, so tracing listens to
LangGraph instead of living inside the nodes. `setup_tracing` installs one for every run of the process; it can
also be passed by hand in a run's config (`config={"callbacks": [OTelCallbackHandler()]}`).

    invoke_workflow rapid          the graph run: gen_ai.operation.name=invoke_workflow, gen_ai.workflow.name,
      rapid.perceive               then ours: mode, parsed answer, correctness, verdict, image sizes and hashes,
        chat <captioner model>     engine specs, latencies and token counts
      rapid.reason
        chat <reasoner model>      (engine spans come from `rapid_agent.telemetry.engines`)
      rapid.score
    execute_tool <name>            a LangChain tool call (an agent calling RAPID as its vision tool)

A node's recorded errors (an engine that failed) become `exception` events on the node's span and an ERROR status
on the node and the graph run; an exception that escapes a node is recorded with its stack. Nodes of other graphs
are named `<graph>.<node>`; LangGraph's bookkeeping runs share their node's span.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables.config import var_child_runnable_config
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from rapid_agent.backends.base import redact
from rapid_agent.telemetry import attributes as A

TRACER_NAME = "rapid_agent"
#: workflow names of graphs whose runs open an `invoke_workflow` span even when nested in another graph's node
WORKFLOWS = {"rapid"}
#: short scalars copied from a run's outputs onto its span (texts and images stay out; see `capture_content`)
_OUTPUT_KEYS = {
    "id": A.SAMPLE_ID,
    "mode": A.MODE,
    "prediction": A.PREDICTION,
    "correct": A.CORRECT,
    "verdict": A.VERDICT,
    "reasoner_finish_reason": A.FINISH_REASON,
}


@dataclass
class _Run:
    span: Any
    name: str  # the run's own name (a node's key, a graph's name)
    workflow: str | None  # the name of the graph this run belongs to (its own, for a graph run)
    is_node: bool = False
    images: dict = field(default_factory=dict)  # image attributes, computed once per graph run


#: every live run (and the runs that share its span), by LangChain run id, so that an engine call can find the
#: span of the node that asked for it (`current_span`)
_live: dict[UUID, _Run] = {}
_live_lock = threading.Lock()


def current_span() -> Any:
    """The span of the LangChain run this code runs inside (a graph node), else OpenTelemetry's current span, else
    None. Cheap: two context-variable reads and a dict lookup."""
    config = var_child_runnable_config.get()
    if config:
        run_id = getattr(config.get("callbacks"), "parent_run_id", None)
        run = _live.get(run_id) if run_id is not None else None
        if run is not None:
            return run.span
    span = trace.get_current_span()
    return span if span.get_span_context().is_valid else None


def _inner_step(tags: list[str]) -> bool:
    """LangGraph wraps a node's function in a sequence: step 1 is the function, later steps write channels and
    route; those are bookkeeping."""
    return any(t.startswith("seq:step:") and t != "seq:step:1" for t in tags)


class OTelCallbackHandler(BaseCallbackHandler):
    """Turns LangChain/LangGraph chain and tool callbacks into OpenTelemetry spans."""

    #: called in the run's own thread and loop (no executor hop): it only starts and ends spans
    run_inline = True
    #: chain start, end and error are all it needs, so the graph's runs without LangGraph (`graphs/batch.py`) may
    #: drive it with the same events; they make a node's span current with `current`
    direct_runs = True

    def __init__(self, tracer_provider: Any = None) -> None:
        # a proxy until a provider is installed; it follows the global one from then on
        self.tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self.enabled = True
        self._own: set[UUID] = set()  # the runs this handler opened a span for (the rest are aliases)
        self._lock = threading.Lock()

    # -- chains: the graph run and its nodes ---------------------------------------------------------------------
    def on_chain_start(
        self,
        serialized: Any,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not self.enabled:
            return
        name = name or (serialized or {}).get("name") or "chain"
        tags = tags or []
        parent = _live.get(parent_run_id) if parent_run_id else None
        if parent is not None and (
            "langsmith:hidden" in tags or _inner_step(tags) or (parent.is_node and name == parent.name)
        ):
            with _live_lock:
                _live[run_id] = parent  # shares its node's span
            return
        is_node = parent is not None and (metadata or {}).get("langgraph_node") == name and parent.workflow is not None
        is_workflow = parent is None or name in WORKFLOWS
        context = trace.set_span_in_context(parent.span) if parent is not None else None
        attributes: dict[str, Any] = {}
        if is_workflow:
            span_name = f"{A.INVOKE_WORKFLOW} {name}"
            attributes = {A.OPERATION_NAME: A.INVOKE_WORKFLOW, A.WORKFLOW_NAME: name}
            run = _Run(None, name, name)
        elif is_node:
            span_name = f"{parent.workflow}.{name}"
            run = _Run(None, name, parent.workflow, is_node=True)
        else:
            span_name = name
            run = _Run(None, name, parent.workflow if parent else None)
        if isinstance(inputs, dict):
            run.images = self._images(inputs, parent, is_workflow)
            attributes.update(run.images)
            if A.capture_content() and isinstance(inputs.get("question"), str):
                attributes[A.QUESTION] = inputs["question"]
        run.span = self.tracer.start_span(span_name, context=context, attributes=attributes, start_time=time.time_ns())
        with _live_lock:
            _live[run_id] = run
        with self._lock:
            self._own.add(run_id)

    def current(self, run_id: UUID) -> contextlib.AbstractContextManager:
        """The run's span as OpenTelemetry's current span while the block runs (what a node calls finds it so when
        no LangChain run config is there to find it by); nothing for a run this handler has no span of."""
        run = _live.get(run_id)
        if run is None or run.span is None:
            return contextlib.nullcontext()
        return trace.use_span(run.span, end_on_exit=False, record_exception=False, set_status_on_exception=False)

    @staticmethod
    def _images(inputs: dict, parent: _Run | None, is_workflow: bool) -> dict:
        if inputs.get("image") is None and not inputs.get("images"):
            return {}
        if not is_workflow and parent is not None and parent.images:
            return parent.images  # a node of a graph run whose images were hashed when the run started
        return A.image_attributes(inputs)

    def _pop(self, run_id: UUID) -> _Run | None:
        """The run's span if this handler opened it (and forget the run either way)."""
        with _live_lock:
            run = _live.pop(run_id, None)
        with self._lock:
            own = run_id in self._own
            self._own.discard(run_id)
        return run if own else None

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._pop(run_id)
        if run is None:
            return
        span = run.span
        if isinstance(outputs, dict):
            span.set_attributes(self._output_attributes(outputs))
            errors = outputs.get("errors") or []
            if errors:
                if run.is_node:  # the node that recorded the failure: one event per error, with its message
                    for error in errors:
                        span.add_event(
                            "exception", {A.EXCEPTION_TYPE: "EngineError", A.EXCEPTION_MESSAGE: redact(error)}
                        )
                span.set_attribute(A.ERROR_TYPE, "EngineError")
                span.set_status(Status(StatusCode.ERROR, redact("; ".join(errors))))
        span.end()

    @staticmethod
    def _output_attributes(outputs: dict) -> dict:
        attributes = {key: outputs[name] for name, key in _OUTPUT_KEYS.items() if outputs.get(name) is not None}
        for name, value in (outputs.get("metrics") or {}).items():
            if isinstance(value, (int, float)):
                attributes[f"rapid.{name}"] = value
        for role, spec in (outputs.get("engines") or {}).items():
            attributes[f"rapid.{role}"] = redact(spec, limit=300)
        if outputs.get("errors"):
            attributes[A.ERRORS] = len(outputs["errors"])
        if A.capture_content() and isinstance(outputs.get("caption"), str):
            attributes[A.CAPTION] = outputs["caption"]
        return attributes

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._pop(run_id)
        if run is not None:
            _fail(run.span, error)

    # -- tools: an agent calling RAPID (or anything else) --------------------------------------------------------
    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self.enabled:
            return
        name = kwargs.get("name") or (serialized or {}).get("name") or "tool"
        parent = _live.get(parent_run_id) if parent_run_id else None
        attributes: dict[str, Any] = {A.OPERATION_NAME: A.EXECUTE_TOOL, A.TOOL_NAME: name}
        if kwargs.get("tool_call_id"):
            attributes[A.TOOL_CALL_ID] = kwargs["tool_call_id"]
        if isinstance(inputs, dict):
            attributes.update(A.image_attributes(inputs))
        if A.capture_content():  # an image passed as a data URL (what an agent writes) keeps only its size
            arguments = json.dumps(inputs, default=str) if inputs is not None else input_str
            attributes[A.TOOL_CALL_ARGUMENTS] = redact(arguments, limit=None)
        context = trace.set_span_in_context(parent.span) if parent is not None else None
        span = self.tracer.start_span(f"{A.EXECUTE_TOOL} {name}", context=context, attributes=attributes)
        with _live_lock:
            _live[run_id] = _Run(span, name, parent.workflow if parent else None)
        with self._lock:
            self._own.add(run_id)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._pop(run_id)
        if run is None:
            return
        if A.capture_content():
            run.span.set_attribute(A.TOOL_CALL_RESULT, redact(getattr(output, "content", output), limit=None))
        run.span.end()

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._pop(run_id)
        if run is not None:
            _fail(run.span, error)


def _fail(span: Any, error: BaseException) -> None:
    """Exception event (type, message, stack), error.type and an ERROR status whose text is the redacted message."""
    A.record_exception(span, error)
    span.set_attribute(A.ERROR_TYPE, type(error).__qualname__)
    span.set_status(Status(StatusCode.ERROR, redact(f"{type(error).__name__}: {error}")))
    span.end()
