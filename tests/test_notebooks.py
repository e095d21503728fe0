"""The tutorial notebooks: the numbered set 01..08 is there, each opens with its narrative, and each was
stored executed and without errors (nbval, run over ``notebooks/`` by the test command, compares the
outputs themselves)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = [f"{n:02d}" for n in range(1, 9)]


def numbered() -> dict[str, list[Path]]:
    """Notebook number → the notebooks carrying it."""
    found: dict[str, list[Path]] = {}
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        match = re.fullmatch(r"(\d\d)-[a-z0-9-]+\.ipynb", path.name)
        found.setdefault(match.group(1) if match else path.name, []).append(path)
    return found


def test_the_numbered_set_is_complete() -> None:
    """Exactly one notebook per number 01..08, every notebook named ``NN-words.ipynb``."""
    found = numbered()
    assert sorted(found) == EXPECTED, f"notebooks/ holds {sorted(found)}"
    assert all(len(paths) == 1 for paths in found.values()), found


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_stored_executed_without_errors(path: Path) -> None:
    """A title in markdown first; every code cell executed; no stored error output or traceback."""
    cells = json.loads(path.read_text())["cells"]
    assert cells and cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code, "no code cells"
    for number, cell in enumerate(code, 1):
        where = f"code cell {number}: {''.join(cell['source'])[:60]!r}"
        assert cell.get("execution_count") is not None, f"{where} was never run"
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"{where} stored an error: {out.get('ename')}"
            assert "Traceback (most recent call last)" not in "".join(out.get("text", "")), where
