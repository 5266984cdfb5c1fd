"""The command line as a user runs it, in subprocesses: the tiny recipe end to end with the real SmolLM2 reasoner (its
reward varies, its weights move, the live policy is evaluated), a run killed with SIGKILL and resumed, and two
processes under `accelerate launch`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rapid_agent.rl.live_eval import EVAL_DIR, EVAL_JSONL
from rapid_agent.rl.metrics import CURVES_PNG, METRICS_CSV, read_rows
from rapid_agent.rl.models import DEMO_BASE, ensure_tiny_captioner, resolve_model_path
from tests.eval_fixtures import mathvista

ROOT = Path(__file__).resolve().parents[1]
TINY_VPO = ROOT / "rl" / "recipes" / "tiny_cpu_vpo.yaml"
CPU_DDP = ROOT / "rl" / "recipes" / "accelerate" / "cpu_ddp.yaml"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """A fresh cache (the built-in tiny captioner is built into it once) and no hub."""
    cache = tmp_path_factory.mktemp("rl-cache")
    ensure_tiny_captioner(cache / "models" / "tiny-qwen2.5-vl")
    return {**os.environ, "RAPID_AGENT_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def vpo_command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rapid_agent.rl", "vpo", "--config", str(TINY_VPO), "--output_dir", str(out), *extra]


def steps(out: Path) -> list[int]:
    return [int(r["step"]) for r in read_rows(out / METRICS_CSV)]


def logged(out: Path, column: str) -> dict[int, float]:
    """The steps at which `column` was logged, and its values."""
    return {int(r["step"]): float(r[column]) for r in read_rows(out / METRICS_CSV) if r.get(column) not in (None, "")}


def counts_captions(out: Path, step: int) -> int:
    """How many of the live policy's captions at `step` state counts ("There are 2 red shapes.")."""
    records = [
        json.loads(line) for f in (out / EVAL_DIR / f"step-{step:06d}").glob("results*.jsonl") for line in open(f)
    ]
    return sum(str(r.get("caption") or "").startswith("There") for r in records)


def evaluated_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / EVAL_JSONL).read_text().splitlines()]


def run(cmd: list[str], env: dict[str, str], log: Path, timeout: float) -> subprocess.CompletedProcess:
    with open(log, "w") as handle:
        done = subprocess.run(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, log.read_text()[-4000:]
    return done


@pytest.mark.slow
def test_tiny_recipe_learns_on_cpu_with_the_real_reasoner_in_about_two_minutes(tmp_path, env, smollm2_gguf) -> None:
    from safetensors.torch import load_file

    out = tmp_path / "run"
    start = time.perf_counter()
    run(vpo_command(out), env, tmp_path / "log.txt", timeout=600)
    elapsed = time.perf_counter() - start
    rows = read_rows(out / METRICS_CSV)
    training = sum(float(r["step_time"]) for r in rows if r.get("step_time"))
    print(f"tiny recipe: {elapsed:.1f} s for the whole command, {training:.1f} s in its training steps")
    print("reward per step:", logged(out, "reward"), "live eval:", logged(out, "eval/world/accuracy"))
    assert steps(out) == [0, 1, 2, 3, 4, 5, 6]  # step 0: the live policy's first evaluation
    row = rows[1]
    assert {"reward", "reward_std", "vpo/reasoner_accuracy", "vpo/reasoner_latency_s", "vpo/skipped"} <= row.keys()
    # it learns from something: rewards differ within groups, so gradients flow and the weights move
    assert max(logged(out, "reward_std").values()) > 0 and min(logged(out, "frac_reward_zero_std").values()) < 1
    assert max(logged(out, "grad_norm").values()) > 0
    base = load_file(Path(resolve_model_path(DEMO_BASE)) / "model.safetensors")
    trained = load_file(out / "model.safetensors")
    assert any(not base[name].equal(trained[name].to(base[name].dtype)) for name in base), "no weight moved"
    # the live policy on held-out world items at steps 0, 3 and 6, with its interval, in metrics.csv and the JSONL
    accuracy = logged(out, "eval/world/accuracy")
    assert sorted(accuracy) == [0, 3, 6] and all(0 <= a <= 1 for a in accuracy.values())
    assert sorted(logged(out, "eval/world/accuracy_low")) == [0, 3, 6] and logged(out, "eval/seconds")[0] > 0
    assert evaluated_steps(out) == [0, 3, 6]
    # what the greedy policy writes moves towards the query-related counts the reasoner can use (1 -> 16 of 16 when
    # measured; bare answers and full inventories before)
    counts = {step: counts_captions(out, step) for step in (0, 6)}
    print("query-related counts captions of 16 at steps 0 and 6:", counts)
    assert counts[6] > counts[0]
    assert (out / CURVES_PNG).stat().st_size > 10_000
    assert list((out / "runs").rglob("events.out.tfevents.*")), "TensorBoard events missing"
    assert elapsed < 120 * 1.5, f"the tiny recipe took {elapsed:.0f} s"  # 2 min target, with room for a busy CI


@pytest.mark.slow
def test_tiny_recipe_evaluates_a_benchmark_at_every_step_when_asked(tmp_path, env, smollm2_gguf) -> None:
    out = tmp_path / "run"
    fixture = mathvista(tmp_path / "mathvista")
    extra = ["--eval_benchmarks", f"mathvista={fixture}", "--eval_every_steps", "1", "--eval_limit", "4"]
    run(vpo_command(out, *extra, "--max_steps", "2"), env, tmp_path / "log.txt", timeout=600)
    accuracy = logged(out, "eval/mathvista/accuracy")
    print("eval/mathvista/accuracy per step:", accuracy)
    assert sorted(accuracy) == [0, 1, 2] and not logged(out, "eval/world/accuracy")
    n = logged(out, "eval/mathvista/n")  # the same subset at every step (one of its 4 rows has no image file)
    assert len(set(n.values())) == 1 and 3 <= n[0] <= 4
    assert steps(out) == [0, 1, 2] and evaluated_steps(out) == [0, 1, 2]


@pytest.mark.slow
def test_killed_run_resumes_without_gaps_or_duplicates(tmp_path, env, tiny_reasoner_dir) -> None:
    out = tmp_path / "run"
    common = ["--reasoner", f"hf:{tiny_reasoner_dir}", "--judge", "off", "--max_steps", "8", "--report_to", "none"]
    with open(tmp_path / "first.txt", "w") as log:
        proc = subprocess.Popen(vpo_command(out, *common), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 300
        while not ((out / "checkpoint-2" / "trainer_state.json").is_file() and len(steps(out)) >= 3):
            assert proc.poll() is None, (tmp_path / "first.txt").read_text()[-4000:]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = read_rows(out / METRICS_CSV)
    assert 3 <= len(before) < 9 and steps(out) == list(range(len(before)))  # step 0: the live policy's evaluation
    first_evaluations = evaluated_steps(out)

    run(vpo_command(out, *common, "--resume_from_checkpoint", "true"), env, tmp_path / "second.txt", timeout=300)
    assert steps(out) == list(range(9))
    after = read_rows(out / METRICS_CSV)
    assert [r["loss"] for r in after[1:3]] == [r["loss"] for r in before[1:3]]  # rows up to the checkpoint are kept
    assert after[0]["eval/world/accuracy"] == before[0]["eval/world/accuracy"]
    # each evaluation once (steps 0, 3, 6 and the last), the first run's up to the checkpoint kept
    assert evaluated_steps(out) == [0, 3, 6, 8] and first_evaluations[0] == 0
    assert sorted(logged(out, "eval/world/accuracy")) == [0, 3, 6, 8]
    state = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["global_step"] == 8
    assert [h["step"] for h in state["log_history"] if "loss" in h] == list(range(1, 9))


@pytest.mark.slow
def test_two_cpu_processes_under_accelerate_launch(tmp_path, env, tiny_reasoner_dir) -> None:
    out = tmp_path / "run"
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--config_file", str(CPU_DDP), "-m", "rapid_agent.rl"]
    cmd += vpo_command(out, "--reasoner", f"hf:{tiny_reasoner_dir}", "--max_steps", "2", "--report_to", "none")[3:]
    run(cmd, {**env, "OMP_NUM_THREADS": "1"}, tmp_path / "log.txt", timeout=400)
    assert steps(out) == [0, 1, 2] and evaluated_steps(out) == [0, 2]  # the main process evaluated, at 0 and the end
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    # 64 prompts x 4 samples; two processes of 16 samples each make 8 steps an epoch (one process would make 16)
    assert state["epoch"] == pytest.approx(2 / 8)
