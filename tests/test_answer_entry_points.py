"""`check_answer` gives the same verdicts however the program that calls it was started: a script with or without a
`__main__` guard, a heredoc on stdin, `python -c`, a REPL, a notebook kernel, a thread, a forked child and a process
started by spawn. Each runs in a fresh interpreter, as a user's program would.

The checks below all need math-verify (none is decided in-process), so each goes to the worker processes: the part
that broke when workers were started by multiprocessing and re-imported the caller's `__main__`.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = [
    (r"\boxed{3/4}", "0.75"),
    (r"The answer is \boxed{\frac{1}{2}}.", "0.5"),
    (r"\boxed{\sqrt{2}}", "1.41"),
    (r"so $x = 2\pi$", r"2\pi"),
    (r"\boxed{(1, 2]}", "(1,2]"),
]
EXPECTED = [True, True, False, True, True]

CHECK = f"""
from rapid_agent.answers import check_answer, check_answers
CASES = {CASES!r}
print("VERDICTS", [check_answer(o, g).correct for o, g in CASES], [v.correct for v in check_answers(*zip(*CASES))])
"""


def run_python(args: list[str], *, stdin: str | None = None, cwd: Path, timeout: float = 180) -> list[list]:
    """Run the interpreter; the `VERDICTS` lines it printed, parsed (one or more: forks and threads print theirs)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, *args], input=stdin, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )
    lines = [line.split(" ", 1)[1] for line in done.stdout.splitlines() if line.startswith("VERDICTS ")]
    assert done.returncode == 0 and lines, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    return [list(ast.literal_eval(f"({line.replace('] [', '], [')})")) for line in lines]


def assert_all_right(runs: list[list]) -> None:
    for one_by_one, batched in runs:
        assert one_by_one == EXPECTED and batched == EXPECTED, runs


def test_a_script_without_a_main_guard(tmp_path):
    (tmp_path / "unguarded.py").write_text(CHECK)
    runs = run_python(["unguarded.py"], cwd=tmp_path)
    assert len(runs) == 1  # the script ran once: no worker re-ran it
    assert_all_right(runs)


def test_a_script_run_from_a_folder_holding_another_rapid_agent(tmp_path):
    # a source checkout in the working folder beside an installed library: the workers must not import it
    shadow = tmp_path / "rapid_agent"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the shadowing copy was imported')\n")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "check.py").write_text(CHECK)
    assert_all_right(run_python(["scripts/check.py"], cwd=tmp_path))


def test_a_heredoc_on_stdin(tmp_path):
    # `python - <<EOF ... EOF`: the main module is '<stdin>', which no worker could re-import
    assert_all_right(run_python(["-"], stdin=CHECK, cwd=tmp_path))


def test_python_c(tmp_path):
    assert_all_right(run_python(["-c", CHECK], cwd=tmp_path))


def test_a_repl(tmp_path):
    lines = [line for line in CHECK.strip().splitlines()]
    assert_all_right(run_python(["-i", "-q"], stdin="\n".join(lines) + "\n", cwd=tmp_path))


def test_a_thread_and_a_guarded_script(tmp_path):
    script = textwrap.dedent(
        """
        import threading

        def main():
            exec(CHECK, {})

        if __name__ == "__main__":
            worker = threading.Thread(target=main)
            worker.start()
            worker.join()
        """
    )
    (tmp_path / "threaded.py").write_text(f"CHECK = {CHECK!r}\n{script}")
    assert_all_right(run_python(["threaded.py"], cwd=tmp_path))


def test_a_forked_child_of_a_process_whose_pool_runs(tmp_path):
    script = textwrap.dedent(
        """
        import os
        exec(CHECK)  # the parent's workers are up when it forks
        pid = os.fork()
        if pid == 0:
            exec(CHECK, {})
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        exec(CHECK)
        """
    )
    (tmp_path / "forked.py").write_text(f"CHECK = {CHECK!r}\n{script}")
    runs = run_python(["forked.py"], cwd=tmp_path)
    assert len(runs) == 3  # parent, child, parent again
    assert_all_right(runs)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_process_started_by_multiprocessing(tmp_path, method):
    script = textwrap.dedent(
        f"""
        import multiprocessing

        def main():
            exec(CHECK, {{}})

        if __name__ == "__main__":
            child = multiprocessing.get_context({method!r}).Process(target=main)
            child.start()
            child.join()
            assert child.exitcode == 0
        """
    )
    (tmp_path / "started.py").write_text(f"CHECK = {CHECK!r}\n{script}")
    assert_all_right(run_python(["started.py"], cwd=tmp_path))


@pytest.mark.slow  # starts a Jupyter kernel
def test_a_notebook_kernel(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CHECK)])
    nbclient.NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "".join(o.get("text", "") for o in notebook.cells[0].outputs if o.output_type == "stream")
    lines = [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("VERDICTS ")]
    runs = [list(ast.literal_eval(f"({line.replace('] [', '], [')})")) for line in lines]
    assert runs, notebook.cells[0].outputs
    assert_all_right(runs)
