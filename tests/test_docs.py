"""The README and docs/ as a newcomer reads them: the worked example runs as written and
prints what the README says it prints; every link to a page or figure leads to a file."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_example_runs_and_prints_what_it_says(tmp_path):
    readme = (ROOT / "README.md").read_text()
    script, = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S)
               if "build_executable" in b]
    (tmp_path / "example.py").write_text(script)
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    claimed = " ".join(re.search(r"It prints `(.*?)`", readme, re.S).group(1).split())
    assert done.stdout.strip() == claimed


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_lead_to_files(page):
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
        assert (page.parent / target).exists(), f"{page.name} links to {target}, not a file"
