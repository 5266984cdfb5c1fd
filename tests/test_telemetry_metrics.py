"""Evaluation batches and training steps as spans and OpenTelemetry metrics: the graph runs of a batch hang under
its span, the VPO reasoner's calls under the training step that made them, and the figures become metrics."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from rapid_agent import RapidContext, solve_batch
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.tracing import disable_tracing, eval_batch, flush_tracing, read_metrics, read_trace, setup_tracing
from tests.tiny_rl import tiny_settings


@pytest.fixture
def trace_file(tmp_path):
    path = tmp_path / "trace.jsonl"
    setup_tracing(str(path))
    yield path
    disable_tracing()


def test_an_eval_batch_is_a_span_over_its_runs_with_its_figures_as_metrics(trace_file):
    captioner = FunctionEngine(lambda r: "<caption>two dots</caption><solution>\\boxed{2}</solution>")
    reasoner = FunctionEngine(lambda r: "\\boxed{2}")
    samples = [{"image": Image.new("RGB", (32, 32)), "question": f"q{i}", "answer": str(2 + i % 2)} for i in range(4)]
    with eval_batch(len(samples), {"rapid.mode": "qcap+sol", "rapid.benchmark": "dots"}) as batch:
        batch.results(solve_batch(samples, context=RapidContext(captioner, reasoner)))
    flush_tracing()
    spans = read_trace(trace_file)
    (span,) = [s for s in spans if s["name"] == "rapid.eval.batch"]
    a = span["attributes"]
    assert a["rapid.eval.accuracy"] == 0.5 and a["rapid.eval.errors"] == 0 and a["rapid.batch.size"] == 4
    assert a["rapid.eval.valid_caption_ratio"] == 1.0 and a["rapid.eval.samples_per_second"] > 0
    runs = [s for s in spans if s["name"] == "invoke_workflow rapid"]
    assert len(runs) == 4 and all(r["parent_id"] == span["span_id"] for r in runs)
    points = {p["metric"]: p for p in read_metrics(trace_file)}
    assert points["rapid.eval.accuracy"]["value"] == 0.5
    assert points["rapid.eval.accuracy"]["attributes"] == {"rapid.mode": "qcap+sol", "rapid.benchmark": "dots"}
    assert points["rapid.reasoner.latency"]["count"] == 4 and points["rapid.reasoner.latency"]["unit"] == "s"


def test_a_failed_eval_batch_records_its_exception(trace_file):
    with pytest.raises(RuntimeError, match="disk full"):
        with eval_batch(3):
            raise RuntimeError("disk full")
    (span,) = [s for s in read_trace(trace_file) if s["name"] == "rapid.eval.batch"]
    assert span["status"] == "ERROR" and span["events"][0]["attributes"]["exception.message"] == "disk full"


def test_training_steps_are_spans_with_the_reasoner_calls_under_them(trace_file, tmp_path):
    from rapid_agent.rl.config import VPOConfig
    from rapid_agent.rl.data import prepare_dataset
    from rapid_agent.rl.models import ensure_tiny_captioner
    from rapid_agent.rl.train import build_trainer
    from rapid_agent.telemetry.training import OTelTrainerCallback
    from rapid_agent.world import build_world

    caption = re.compile(r"Description:\n(.*?)\n\nQuestion:", re.DOTALL)
    reasoner = FunctionEngine(
        lambda r: "\\boxed{7}" if re.search(r"\d", caption.search(r.prompt).group(1)) else "\\boxed{0}", spec="fn:llm"
    )
    data = prepare_dataset(build_world(8, 2, seed=0)["train"].map(lambda row: {"answer": "7"}), mode="cap")[0]
    captioner = ensure_tiny_captioner(tmp_path / "captioner")
    config = VPOConfig(
        **tiny_settings(
            tmp_path / "vpo", captioner, mode="cap", per_device_train_batch_size=4, max_completion_length=8
        )
    )
    trainer = build_trainer(config, reasoner=reasoner, train_dataset=data)  # its OTel callback is built in
    assert sum(isinstance(c, OTelTrainerCallback) for c in trainer.callback_handler.callbacks) == 1
    trainer.train()
    flush_tracing()
    spans = read_trace(trace_file)
    (run,) = [s for s in spans if s["name"] == "rapid.train"]
    steps = [s for s in spans if s["name"] == "rapid.train.step"]
    assert [s["attributes"]["rapid.train.step"] for s in steps] == [1, 2]
    assert all(s["parent_id"] == run["span_id"] for s in steps) and run["attributes"]["rapid.train.steps"] == 2
    for step in steps:
        a = step["attributes"]
        assert 0 <= a["rapid.train.reward.mean"] <= 1 and 0 <= a["rapid.train.reasoner_accuracy"] <= 1
        assert a["rapid.train.samples_per_second"] > 0 and a["rapid.reasoner.latency"] >= 0
    by_id = {s["span_id"]: s for s in spans}

    def step_of(span: dict) -> str | None:  # the reward runs the graph: its model calls sit under a graph run
        while span is not None and span["name"] != "rapid.train.step":
            span = by_id.get(span["parent_id"])
        return span and span["span_id"]

    calls = [s for s in spans if s["name"] == "chat llm"]
    assert len(calls) == 2 and {step_of(c) for c in calls} == {s["span_id"] for s in steps}
    metrics = {p["metric"] for p in read_metrics(trace_file)}
    assert {"rapid.train.reward.mean", "rapid.train.reasoner_accuracy", "rapid.train.samples_per_second"} <= metrics
    assert {"rapid.reasoner.latency", "rapid.train.loss"} <= metrics
