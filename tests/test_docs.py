"""The docs site builds with no warning (a broken link, a missing page or an API reference to a name that no longer
exists fails), and the README stays a short front page: under 200 lines, the two set-up commands CI and the tests
stand on, and links to the docs pages that hold the rest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
#: the set-up block (`.ci/run` runs `make test`; the Makefile's comment names both)
SETUP_COMMANDS = ("make demo", "make test")
#: the docs pages the README sends readers to
DOCS_PAGES = (
    "docs/index.md",
    "docs/concepts/graph.md",
    "docs/concepts/modes.md",
    "docs/concepts/engines.md",
    "docs/cli.md",
    "docs/evaluation.md",
    "docs/training.md",
    "docs/serving.md",
    "docs/tracing.md",
    "docs/embedding.md",
    "docs/demo.md",
    "docs/demo-history.md",
    "docs/benchmarks.md",
    "docs/api/index.md",
)


def readme_links() -> list[str]:
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", README) if not re.match(r"[a-z]+:|#", t)]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_docs_build_strict_with_api_reference_and_included_pages(site: Path) -> None:
    reference = (site / "api" / "rapid_agent" / "index.html").read_text()
    for name in ("rapid_agent.api.solve", "rapid_agent.api.solve_batch", "rapid_agent.config.RapidContext"):
        assert f'id="{name}"' in reference, name
    # a mapped subpackage (rl/ installs as rapid_agent.rl), with its fields' help as their docs
    training_reference = (site / "api" / "rl" / "index.html").read_text()
    assert 'id="rapid_agent.rl.config.VPOConfig"' in training_reference
    assert 'id="rapid_agent.rl.config.RapidRLConfig.model_name_or_path"' in training_reference
    # the training page is rl/README.md itself, whatever was added to it
    rl_readme_title = (ROOT / "rl" / "README.md").read_text().splitlines()[0].lstrip("# ").split(":")[0]
    assert rl_readme_title in (site / "training" / "index.html").read_text()


def test_readme_is_a_short_front_page() -> None:
    lines = README.splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines; move detail to docs/"
    code_lines = [line.split("#")[0].strip() for line in lines]
    for command in SETUP_COMMANDS:
        assert command in code_lines, f"README.md lost its set-up command {command!r}"
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_links_resolve_and_reach_the_docs_pages() -> None:
    links = readme_links()
    missing = [link for link in links if not (ROOT / link.split("#")[0]).exists()]
    assert not missing, f"README.md links to paths that do not exist: {missing}"
    unlinked = [page for page in DOCS_PAGES if page not in links]
    assert not unlinked, f"README.md does not link to {unlinked}"
