"""The optional dependencies agree with what the pinned libraries support: the vllm extra admits only the vLLM
releases the installed TRL supports (vllm 0.32+ pins another torch and an older transformers), and DeepSpeed, which
every paper recipe trains under, is an extra of its own whose absence is named when a run asks for it."""

from __future__ import annotations

import sys
from importlib.metadata import requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ImportError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def requirement(requirements: list[str], name: str) -> Requirement:
    return next(r for r in map(Requirement, requirements) if r.name == name)


def trl_requirement(name: str) -> Requirement:
    return next(r for r in map(Requirement, requires("trl") or []) if r.name == name)


def test_the_vllm_extra_admits_only_what_trl_supports() -> None:
    ours, trl_range = requirement(EXTRAS["vllm"], "vllm").specifier, trl_requirement("vllm").specifier
    releases = [f"0.{minor}.{patch}" for minor in range(8, 40) for patch in range(3)]
    admitted = [v for v in releases if v in ours]
    assert admitted and all(v in trl_range for v in admitted), [v for v in admitted if v not in trl_range]
    assert "0.34.0" not in ours  # pins torch 2.14 and transformers<5.23


def test_deepspeed_is_an_extra_at_trls_floor() -> None:
    ours = requirement(EXTRAS["deepspeed"], "deepspeed").specifier
    trl_floor = trl_requirement("deepspeed").specifier
    assert all(v in ours for v in ("0.18.6", "0.19.8")) and "0.18.6" in trl_floor
    assert "rapid-agent[rl]" in EXTRAS["deepspeed"]


def test_a_deepspeed_run_without_deepspeed_names_the_extra(monkeypatch) -> None:
    from rapid_agent.rl.__main__ import cli

    monkeypatch.setitem(sys.modules, "deepspeed", None)  # not installed, whether or not it is
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # what `accelerate launch --config_file zero3.yaml` sets
    with pytest.raises(SystemExit, match=r"pip install 'rapid-agent\[deepspeed\]'"):
        cli(["vpo", "--config", str(ROOT / "rl" / "recipes" / "tiny_cpu_vpo.yaml")])
