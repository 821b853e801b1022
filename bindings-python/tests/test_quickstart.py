"""The README's Python quick start is examples/quickstart.py; it must run."""

from __future__ import annotations

import pathlib
import subprocess
import sys

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "quickstart.py"


def test_quickstart_runs(tmp_path):
    r = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "holding jobs/reindex with token" in out
    assert "master: Master(id='a'" in out
    assert "event: lock_acquired" in out


def test_readme_shows_the_quickstart():
    readme = (EXAMPLE.parent.parent.parent / "README.md").read_text()
    section = readme.split("## Python", 1)[1]
    assert "pip install ./bindings-python" in section
    assert "examples/quickstart.py" in section
    # The README's code is the example's, word for word.
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert block.strip() in EXAMPLE.read_text()
