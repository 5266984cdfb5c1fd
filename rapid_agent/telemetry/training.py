"""Training as spans and metrics: a transformers `TrainerCallback` (so it works with TRL's GRPOTrainer unchanged).

    trainer = GRPOTrainer(..., callbacks=[OTelTrainerCallback()])

One `rapid.train` span covers the run; each optimizer step is a `rapid.train.step` child, current while the step
runs, so the engine calls its rewards make (the VPO reasoner) hang under it. When the trainer logs a step, its
numbers become attributes of that step's span and OTel metrics: `rapid.train.reward.mean`, `.reward.std`,
`.accuracy`, `.reasoner_accuracy`, `.valid_caption_ratio`, `rapid.reasoner.latency`, the measured
`rapid.train.samples_per_second`, and every other logged number as `rapid.train.<key>`. With tracing off every call
is a no-op. Only the main process records (the others would repeat its numbers).
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import context, trace
from transformers import TrainerCallback

from rapid_agent.telemetry.metrics import _instrument, metric_name, record_metrics

TRACER_NAME = "rapid_agent"
#: TRL/RAPID log keys with a name of their own
KNOWN_KEYS = {
    "reward": "rapid.train.reward.mean",
    "reward_std": "rapid.train.reward.std",
    "rewards/accuracy/mean": "rapid.train.accuracy",
    "vpo/reasoner_accuracy": "rapid.train.reasoner_accuracy",
    # over every sampled caption (the paper's plot) or over the correct ones, as the run's judge_scope says
    "vpo/valid_caption_ratio_all": "rapid.train.valid_caption_ratio",
    "vpo/valid_caption_ratio_correct": "rapid.train.valid_caption_ratio.correct",
}
LATENCY_KEY = "vpo/reasoner_latency_s"


class OTelTrainerCallback(TrainerCallback):
    """Spans per training run and step, and the logged numbers as metrics."""

    def __init__(self) -> None:
        self._tracer = trace.get_tracer(TRACER_NAME)
        self._run: Any = None
        self._step: Any = None
        self._token: Any = None
        self._step_started = 0.0
        self._step_seconds: float | None = None
        self._step_end_ns: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._run = self._tracer.start_span(
                "rapid.train",
                attributes={"rapid.train.max_steps": state.max_steps, "rapid.train.output_dir": str(args.output_dir)},
            )

    def on_step_begin(self, args, state, control, **kwargs):
        if self._run is None:
            return
        self._end_step()
        parent = trace.set_span_in_context(self._run)
        self._step = self._tracer.start_span(
            "rapid.train.step", context=parent, attributes={"rapid.train.step": state.global_step + 1}
        )
        self._token = context.attach(trace.set_span_in_context(self._step))
        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._step is None:
            return
        self._step_seconds = time.perf_counter() - self._step_started
        self._step_end_ns = time.time_ns()
        self._detach()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._run is None or not logs or "train_runtime" in logs:
            return
        values = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        named = {KNOWN_KEYS.get(k) or metric_name(k, "rapid.train."): v for k, v in values.items()}
        latency = named.pop(metric_name(LATENCY_KEY, "rapid.train."), None)
        if self._step_seconds:
            per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
            named["rapid.train.samples_per_second"] = per_step / self._step_seconds
        attributes = {"rapid.stage": "train"}
        record_metrics(named, attributes)
        if latency is not None:
            _instrument("rapid.reasoner.latency").record(latency, attributes)
            named["rapid.reasoner.latency"] = latency  # on the span only: the metric is the histogram above
        if self._step is not None:
            self._step.set_attributes(named)
            self._end_step()

    def on_train_end(self, args, state, control, **kwargs):
        self._end_step()
        if self._run is not None:
            self._run.set_attribute("rapid.train.steps", state.global_step)
            self._run.end()
            self._run = None

    def _detach(self) -> None:
        if self._token is not None:
            context.detach(self._token)
            self._token = None

    def _end_step(self) -> None:
        """End the last step's span at the time its step ended (it stays open until the trainer has logged it)."""
        self._detach()
        if self._step is not None:
            self._step.end(end_time=self._step_end_ns)
            self._step = None
            self._step_end_ns = None
