"""The documentation a user reads: the README's and the docs' shell blocks run as written, against the data
`warmstart demo` writes, in a fresh directory; the docs site builds offline with warnings as errors; nothing
in them points outside the repository.

Blocks fenced as ``bash`` are commands to run as written: this runs them, one file's blocks in order, in one
shell each. ``console`` blocks show commands with placeholders (``runs/old/``, ``s3://bucket/...``) or the two
commands CI itself runs; ``shell`` blocks start long-running servers and workers (the Prefect quick start),
which ``tests/test_deployments.py`` runs the same way.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
_FENCE = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)


def bash_blocks(path: Path) -> list[str]:
    return _FENCE.findall(path.read_text())


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """A fresh directory holding what `warmstart demo` writes (the example data), as after the first command."""
    from warmstart.examples import write_example_set

    root = tmp_path_factory.mktemp("reader")
    write_example_set(root / "warmstart-demo")
    return root


@pytest.mark.parametrize("page", [p for p in PAGES if bash_blocks(p)], ids=lambda p: str(p.relative_to(REPO)))
def test_every_bash_block_runs_as_written(page: Path, demo_dir: Path, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), TF_CPP_MIN_LOG_LEVEL="3",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    for i, block in enumerate(bash_blocks(page)):
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=demo_dir, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"{page.name} block {i} exited {done.returncode}:\n{block}\n{done.stderr[-3000:]}"


def test_the_docs_site_builds_offline_with_warnings_as_errors(tmp_path):
    """MkDocs in strict mode (mkdocs.yml also makes a page left out of the navigation and a broken link
    warnings): every page is built and reachable from the navigation."""
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for page in (REPO / "docs").rglob("*.md"):
        rel = page.relative_to(REPO / "docs").with_suffix("")
        assert (site / ("" if rel == Path("index") else rel) / "index.html").is_file(), rel


def test_nothing_points_outside_the_repository():
    outside = [f"{p.relative_to(REPO)}: {m}" for p in PAGES
               for m in re.findall(r"\]\(((?:\.\./)+[^)]*)\)", p.read_text())
               if not (p.parent / m.split("#")[0]).resolve().is_relative_to(REPO)]
    assert not outside, outside
    assert not [p for p in PAGES if "../shared" in p.read_text()], "a page points at a folder outside the repository"


def test_the_readme_is_a_product_page():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 350 and "**Contents**" in text
    assert "<<MEASURE" not in text and not [p for p in PAGES if "<<MEASURE" in p.read_text()]
