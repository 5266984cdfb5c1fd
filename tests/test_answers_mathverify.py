"""math-verify's own test cases as a yardstick: `check_answer` must agree with their expected verdicts at least
as often as raw math-verify (`verify(parse(gold), parse(pred))`, all defaults) does.

The cases are read at test time from math-verify's sdist, which `make` downloads into `.cache/math-verify-sdist`
(nothing of it is committed): the parametrize tables of its `tests/` are parsed with `ast`, never imported. Rows
whose extra parameters (precision, strict, allow_set_relation_comp) differ from math-verify's defaults are left
out. A bare prediction (no `$`, `\\(`, `\\[` or box) is boxed, as a reasoner writes its answer; the rest go as
written. The same verdicts must come back from a fresh interpreter fed the suite as a heredoc or as a script without
a `__main__` guard, and with the machine's cores oversubscribed.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest

from rapid_agent import _verify_pool
from rapid_agent.answers import check_answers

VERSION = version("math-verify")
SDIST = Path(__file__).resolve().parents[1] / ".cache" / "math-verify-sdist" / f"math_verify-{VERSION}.tar.gz"
DEFAULTS = {"precision": 6, "strict": True, "allow_set_relation_comp": False}
_DELIMITED = re.compile(r"\$|\\\(|\\\[|\\boxed")
TIMEOUT_S = 20.0


def read_cases(sdist: Path) -> list[tuple[str, str, str, bool]]:
    """(file, gold, prediction, expected) for every literal row of a gold/pred parametrize table."""
    cases = []
    with tarfile.open(sdist) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            if not re.search(r"/tests/test_\w+\.py$", member.name):
                continue
            tree = ast.parse(archive.extractfile(member).read().decode())
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "parametrize"):
                    continue
                names = [n.strip() for n in ast.literal_eval(node.args[0]).split(",")]
                if not {"gold", "pred"} <= set(names):
                    continue
                for element in node.args[1].elts:
                    try:
                        row = dict(zip(names, ast.literal_eval(element)))
                    except ValueError:  # a computed row (an f-string): not a literal case
                        continue
                    if all(row.get(k, v) == v for k, v in DEFAULTS.items()):
                        expected = row.get("expected", row.get("result"))
                        cases.append((Path(member.name).name, row["gold"], row["pred"], bool(expected)))
    return cases


def as_output(prediction: str) -> str:
    return prediction if _DELIMITED.search(prediction) else f"\\boxed{{{prediction}}}"


def measure(sdist: Path, timeout_s: float = TIMEOUT_S) -> dict:
    """Each case's expected verdict, raw math-verify's and check_answer's (None: undecided), on this process."""
    cases = read_cases(sdist)
    futures = [_verify_pool.submit("raw_verify", (gold, pred), timeout_s) for _, gold, pred, _ in cases]
    raw = []
    for future in futures:
        try:
            raw.append(future.result())
        except Exception:  # a raw check that timed out or raised counts as "not equal", as math-verify does
            raw.append(False)
    ours = check_answers([as_output(p) for _, _, p, _ in cases], [g for _, g, _, _ in cases], timeout_s=timeout_s)
    return {
        "cases": [list(c) for c in cases],
        "expected": [e for *_, e in cases],
        "raw": raw,
        "ours": [v.correct for v in ours],
        "reasons": [v.reason for v in ours],
    }


def agreement(result: dict, key: str) -> int:
    return sum(v == e for v, e in zip(result[key], result["expected"]))


def need_sdist() -> None:
    if not SDIST.exists():
        pytest.skip(
            f"math-verify's test cases are not here ({SDIST}); `make .venv/.installed` downloads them, or: pip "
            f"download --no-deps --no-binary :all: --dest .cache/math-verify-sdist math-verify=={VERSION}"
        )


@pytest.fixture(scope="module")
def here() -> dict:
    """The suite measured in the test process, on an otherwise idle pool."""
    need_sdist()
    return measure(SDIST)


@pytest.mark.slow  # 2 x ~270 checks
def test_check_answer_agrees_with_math_verifys_test_cases_at_least_as_often_as_math_verify(here, capsys):
    assert len(here["cases"]) >= 200, f"only {len(here['cases'])} cases read from {SDIST.name}: changed layout?"
    disagree = [
        f"{name}: gold={gold[:60]!r} pred={pred[-60:]!r} expected={e} ours={v} ({why})"
        for v, why, (name, gold, pred, e) in zip(here["ours"], here["reasons"], here["cases"])
        if v != e
    ]
    with capsys.disabled():
        print(
            f"\nmath-verify {VERSION} test cases: check_answer agrees on {agreement(here, 'ours')}/"
            f"{len(here['cases'])}, raw math-verify on {agreement(here, 'raw')}/{len(here['cases'])}"
        )
    assert None not in here["ours"], "a check could not run"
    assert agreement(here, "ours") >= agreement(here, "raw"), "\n".join(disagree)


#: the suite in a fresh interpreter, printing its figures as JSON; no `__main__` guard, as users write scripts
SCRIPT = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from tests.test_answers_mathverify import SDIST, measure
print("RESULT", json.dumps(measure(SDIST, timeout_s=float(sys.argv[-1]))))
"""


def run_suite(tmp_path: Path, how: str, timeout_s: float) -> dict:
    script = tmp_path / "suite.py"
    script.write_text(SCRIPT)
    args, stdin = ([str(script), str(timeout_s)], None) if how == "script" else (["-", str(timeout_s)], SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, *args], input=stdin, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900
    )
    found = [line[len("RESULT ") :] for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and len(found) == 1, f"exit {done.returncode}: {done.stderr[-3000:]}"
    return json.loads(found[0])


@pytest.mark.slow
@pytest.mark.parametrize("how", ["heredoc", "script"])
def test_the_suite_gives_the_same_verdicts_from_a_heredoc_and_an_unguarded_script(here, tmp_path, how):
    there = run_suite(tmp_path, how, TIMEOUT_S)
    assert there["ours"] == here["ours"] and there["raw"] == here["raw"]
    assert agreement(there, "ours") >= agreement(there, "raw")


@pytest.mark.slow
def test_the_suite_gives_the_same_verdicts_with_the_cores_oversubscribed(tmp_path):
    # check_answer's default 5 s bound: under load a check must get 5 s of work, not 5 s of a busy machine
    need_sdist()
    idle = run_suite(tmp_path, "heredoc", 5.0)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        loaded = run_suite(tmp_path, "heredoc", 5.0)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    changed = [
        f"{gold[:40]!r} vs {pred[:40]!r}: idle {a}, loaded {b} ({why})"
        for (_, gold, pred, _), a, b, why in zip(idle["cases"], idle["ours"], loaded["ours"], loaded["reasons"])
        if a != b
    ]
    assert not changed, "\n".join(changed)
    assert loaded["raw"] == idle["raw"]
    assert agreement(loaded, "ours") >= agreement(loaded, "raw")
