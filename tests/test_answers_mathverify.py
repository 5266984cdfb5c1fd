"""math-verify's own test cases as a yardstick: `check_answer` must agree with their expected verdicts at least
as often as raw math-verify (`verify(parse(gold), parse(pred))`, all defaults) does.

The cases are read at test time from math-verify's sdist, which `make` downloads into `.cache/math-verify-sdist`
(nothing of it is committed): the parametrize tables of its `tests/` are parsed with `ast`, never imported. Rows
whose extra parameters (precision, strict, allow_set_relation_comp) differ from math-verify's defaults are left
out. A bare prediction (no `$`, `\\(`, `\\[` or box) is boxed, as a reasoner writes its answer; the rest go as
written.
"""

from __future__ import annotations

import ast
import re
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


@pytest.mark.slow  # 2 x ~270 checks
def test_check_answer_agrees_with_math_verifys_test_cases_at_least_as_often_as_math_verify(capsys):
    if not SDIST.exists():
        pytest.skip(
            f"math-verify's test cases are not here ({SDIST}); `make .venv/.installed` downloads them, or: pip "
            f"download --no-deps --no-binary :all: --dest .cache/math-verify-sdist math-verify=={VERSION}"
        )
    cases = read_cases(SDIST)
    assert len(cases) >= 200, f"only {len(cases)} cases read from {SDIST.name}: has its layout changed?"
    futures = [_verify_pool.submit("raw_verify", (gold, pred), TIMEOUT_S) for _, gold, pred, _ in cases]
    raw = []
    for future in futures:
        try:
            raw.append(future.result())
        except Exception:  # a raw check that timed out or raised counts as "not equal", as math-verify does
            raw.append(False)
    ours = check_answers([as_output(p) for _, _, p, _ in cases], [g for _, g, _, _ in cases], timeout_s=TIMEOUT_S)
    raw_agree = sum(r == e for r, (*_, e) in zip(raw, cases))
    ours_agree = sum(v.correct == e for v, (*_, e) in zip(ours, cases))
    disagree = [
        f"{name}: gold={gold[:60]!r} pred={pred[-60:]!r} expected={e} ours={v.correct} ({v.reason})"
        for v, (name, gold, pred, e) in zip(ours, cases)
        if v.correct != e
    ]
    with capsys.disabled():
        print(
            f"\nmath-verify {VERSION} test cases: check_answer agrees on {ours_agree}/{len(cases)}, "
            f"raw math-verify on {raw_agree}/{len(cases)}"
        )
    assert ours_agree >= raw_agree, "\n".join(disagree)
