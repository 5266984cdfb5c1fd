"""The light core: the graph on OpenAI-compatible engines loads no GPU stack, a core-only install in a fresh
virtualenv runs it, and every optional part that is missing says which extra to install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from PIL import Image

from tests.http_server import FakeChatServer, SeenRequest, chat_reply

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "tests" / "core_only_probe.py"


def answer(seen: SeenRequest):
    if seen.image_urls:
        return chat_reply("<caption>two dots</caption><solution>\\boxed{2}</solution>", completion_tokens=8)
    return chat_reply("\\boxed{2}", completion_tokens=4)


def probe(python: str, tmp_path: Path) -> dict:
    image = tmp_path / "dots.png"
    Image.new("RGB", (32, 32), "white").save(image)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    with FakeChatServer(answer) as server:
        out = subprocess.run(
            [python, str(PROBE), server.base_url, str(image), str(tmp_path / "trace.jsonl")],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,  # not the repository: the installed package must be the one imported
            timeout=300,
        )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_graph_on_openai_engines_traced_imports_no_gpu_stack(tmp_path):
    report = probe(sys.executable, tmp_path)
    assert report["correct"] is True and not report["errors"]
    assert {"invoke_workflow rapid", "chat vl", "chat llm"} <= set(report["spans"])
    assert report["heavy_modules"] == []


#: the GPU stack, and what a core-only install lacks (transformers is in the core: the command lines' parser)
GPU_STACK = ["torch", "trl", "datasets", "peft"]
BLOCKED = f"import sys; sys.modules.update(dict.fromkeys({['transformers', *GPU_STACK]!r}, None)); "
CORE_ONLY = f"import sys; sys.modules.update(dict.fromkeys({GPU_STACK!r}, None)); "


def run_blocked(code: str, blocked: str = BLOCKED) -> subprocess.CompletedProcess:
    """`code` in a process where the GPU stack cannot be imported (by default transformers neither)."""
    return subprocess.run(
        [sys.executable, "-c", blocked + code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


@pytest.mark.parametrize(
    ("code", "extra", "blocked"),
    [
        ("from rapid_agent import load_engine; load_engine('hf:/some/model', 'reasoner')", "hf", BLOCKED),
        (
            "import runpy; sys.argv = ['rapid_agent', 'demo', '--quick']; runpy.run_module('rapid_agent', run_name='__main__')",
            "demo",
            CORE_ONLY,
        ),
        (
            "import runpy; sys.argv = ['rl', 'vpo']; runpy.run_module('rapid_agent.rl', run_name='__main__')",
            "rl",
            BLOCKED,
        ),
    ],
)
def test_a_missing_extra_is_an_error_that_names_it(code, extra, blocked):
    out = run_blocked(code, blocked)
    assert out.returncode != 0
    assert f"pip install 'rapid-agent[{extra}]'" in out.stderr, out.stderr[-2000:]


def test_run_still_works_without_the_demo_extra():
    out = run_blocked(
        "import runpy; sys.argv = ['rapid_agent', 'run', '--help']; runpy.run_module('rapid_agent', run_name='__main__')",
        CORE_ONLY,
    )
    assert out.returncode == 0 and "--captioner" in out.stdout and "--trace" in out.stdout, out.stderr


@pytest.mark.slow
def test_a_core_only_install_in_a_fresh_virtualenv_runs_the_graph(tmp_path):
    """`pip install rapid-agent` (no extras) into an empty virtualenv: no torch arrives, the graph runs on an
    `openai:` engine against a loopback server, and an `hf:` engine asks for the [hf] extra."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "rapid-agent" in installed and "langgraph" in installed
    assert not installed & {"torch", "trl", "datasets", "peft", "matplotlib", "tensorboard"}
    report = probe(python, tmp_path)
    assert report["correct"] is True and report["heavy_modules"] == []
    assert "invoke_workflow rapid" in report["spans"]
    assert "MissingExtraError" in report["hf_error"] and "pip install 'rapid-agent[hf]'" in report["hf_error"]
