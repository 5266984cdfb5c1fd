"""The command line as a user runs it, in subprocesses: the tiny recipe end to end with the real SmolLM2 reasoner,
a run killed with SIGKILL and resumed, and two processes under `accelerate launch`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rapid_agent.rl.metrics import CURVES_PNG, METRICS_CSV, read_rows
from rapid_agent.rl.models import ensure_tiny_captioner

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


def run(cmd: list[str], env: dict[str, str], log: Path, timeout: float) -> subprocess.CompletedProcess:
    with open(log, "w") as handle:
        done = subprocess.run(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, log.read_text()[-4000:]
    return done


@pytest.mark.slow
def test_tiny_recipe_runs_on_cpu_with_the_real_reasoner_in_under_two_minutes(tmp_path, env, smollm2_gguf) -> None:
    out = tmp_path / "run"
    start = time.perf_counter()
    run(vpo_command(out), env, tmp_path / "log.txt", timeout=600)
    elapsed = time.perf_counter() - start
    rows = read_rows(out / METRICS_CSV)
    training = sum(float(r["step_time"]) for r in rows)
    print(f"tiny recipe: {elapsed:.1f} s for the whole command, {training:.1f} s in its {len(rows)} training steps")
    assert steps(out) == [1, 2, 3, 4]
    row = rows[0]
    assert {"reward", "reward_std", "vpo/reasoner_accuracy", "vpo/reasoner_latency_s", "vpo/skipped"} <= row.keys()
    assert (out / CURVES_PNG).stat().st_size > 10_000
    assert list((out / "runs").rglob("events.out.tfevents.*")), "TensorBoard events missing"
    assert (out / "model.safetensors").is_file()
    assert elapsed < 120 * 1.5, f"the tiny recipe took {elapsed:.0f} s"  # 2 min target, with room for a busy CI


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
    assert 3 <= len(before) < 8 and steps(out) == list(range(1, len(before) + 1))

    run(vpo_command(out, *common, "--resume_from_checkpoint", "true"), env, tmp_path / "second.txt", timeout=300)
    assert steps(out) == list(range(1, 9))
    after = read_rows(out / METRICS_CSV)
    assert [r["loss"] for r in after[:2]] == [r["loss"] for r in before[:2]]  # rows up to the checkpoint are kept
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
    assert steps(out) == [1, 2]
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    # 64 prompts x 4 samples; two processes of 8 samples each make 16 steps an epoch (one process would make 32)
    assert state["epoch"] == pytest.approx(2 / 16)
