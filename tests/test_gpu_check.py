"""The GPU check's own checks can fail: grpo and vpo fail when training is broken (learning rate 0, a constant reward),
a vLLM check without vllm is skipped and never ok, the report's exit status follows the failures, unmet
requirements are named, and the image stand-in holds only what the lent machine's image holds."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gpu_check = load("gpu_check")
gpu_wheelhouse = load("gpu_wheelhouse")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The check's small models, built by its own build check on the CPU."""
    work = tmp_path_factory.mktemp("gpu_check")
    args = gpu_check.parse_args(["build", "--work", str(work), "--dry-cpu", "--hidden", "64", "--reasoner", "tiny"])
    assert gpu_check.run_check(args)["ok"]
    return work


def run(work: Path, check: str, *options: str) -> dict:
    argv = [check, "--work", str(work), "--dry-cpu", "--steps", "2", "--new-tokens", "16", *options]
    return gpu_check.run_check(gpu_check.parse_args(argv))


@pytest.mark.slow
@pytest.mark.parametrize("check", ["grpo", "vpo"])
def test_training_check_passes_and_fails_when_training_is_broken(work, check):
    healthy = run(work, check)
    assert healthy["ok"], healthy["problems"]
    assert healthy["weights_moved"] > 0.5
    assert healthy["param_dtypes"] == ["torch.float32"] and healthy["bf16_autocast"]
    step0 = healthy["importance_ratio"][0]
    assert step0["step"] == 0 and abs(step0["mean"] - 1) < 0.01
    if check == "vpo":  # the reward went through the graph: the hf reasoner answered, the policy judged
        assert "vpo/reasoner_latency_s" in healthy["steps"][0] and "vpo/valid_caption_ratio_all" in healthy["steps"][0]

    frozen = run(work, check, "--learning-rate", "0")
    assert not frozen["ok"]
    assert frozen["weights_moved"] == 0
    assert any("weights moved" in p for p in frozen["problems"]), frozen["problems"]

    constant = run(work, check, "--probe", "constant")
    assert not constant["ok"]
    assert any("rewards varied" in p for p in constant["problems"]), constant["problems"]


def test_vllm_checks_are_skipped_without_vllm(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "vllm_missing", lambda: "vllm not installed")
    for check in ("vllm_engines", "vllm_grpo"):
        out = gpu_check.run_check(gpu_check.parse_args([check, "--work", str(tmp_path)]))
        assert out == {"ok": None, "skipped": "vllm not installed"}


def test_report_fails_when_a_check_failed_and_keeps_every_figure(tmp_path):
    rows = [
        {"check": "env", "ok": True, "gpu": "NVIDIA H200", "versions": {"torch": "2.11.0"}},
        {"check": "grpo", "ok": False, "problems": ["only 0.0% of the layer weights moved"], "weights_moved": 0.0},
        {"check": "vllm_grpo", "ok": None, "skipped": "vllm not installed"},
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "gpu.json"
    argv = ["report", "--work", str(tmp_path), "--out", str(out), "--wall-s", "300", "--budget-s", "450"]
    assert gpu_check.write_report(gpu_check.parse_args(argv)) == 1
    report = json.loads(out.read_text())
    assert report["ok"] is False and report["mode"] == "gpu" and report["machine"]["gpu"] == "NVIDIA H200"
    assert [c["status"] for c in report["checks"]] == ["ok", "failed", "skipped"]
    assert report["checks"][1]["weights_moved"] == 0.0

    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (rows[0], rows[2])))
    assert gpu_check.write_report(gpu_check.parse_args(argv)) == 0


def test_unmet_requirements_are_named():
    dist = SimpleNamespace(
        metadata={"Name": "carried"},
        requires=["packaging>=1", "packaging<1", "no-such-package-here>=1", "also-missing; extra == 'x'"],
    )
    unmet = gpu_check.unmet_requirements([dist], {})
    assert len(unmet) == 2
    assert unmet[0].startswith("no-such-package-here (missing; carried needs")
    assert unmet[1].startswith("packaging ") and "packaging<1" in unmet[1]
    assert gpu_check.unmet_requirements([dist], {"carried": ("x",)})[0].startswith("also-missing (missing")


def test_image_stand_in_holds_only_the_lent_machines_packages():
    from packaging.requirements import Requirement

    names = {gpu_wheelhouse.canonical(Requirement(r).name) for r in gpu_wheelhouse.IMAGE_REQUIREMENTS}
    assert names <= gpu_wheelhouse.IMAGE_PACKAGES
    assert {"torch", "transformers", "accelerate"} <= names
    runtime, backend = gpu_wheelhouse.project_requirements()
    needed = {gpu_wheelhouse.canonical(Requirement(r).name) for r in runtime}
    # what the lent machine lacks is in the project's requirements, so the wheelhouse resolves it
    assert {"trl", "datasets", "langgraph", "langchain-core", "pydantic", "math-verify", "gguf"} <= needed
    assert "vllm" not in needed and not any(n.startswith("rapid-agent") for n in needed)
    assert any(r.startswith("setuptools") for r in backend)
