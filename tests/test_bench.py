"""bench/ keeps working when the library changes: every bench script starts (its imports of the project
resolve, its options parse) and prints its --help; each opens with bench/common.py."""

import ast
import subprocess
import sys

import pytest

from conftest import ROOT

BENCHES = sorted(p for p in (ROOT / "bench").glob("*.py") if p.name != "common.py")


@pytest.mark.parametrize("script", BENCHES, ids=lambda p: p.name)
def test_each_bench_starts_and_shows_its_help(script):
    result = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout


@pytest.mark.parametrize("script", BENCHES, ids=lambda p: p.name)
def test_each_bench_opens_with_the_shared_opening(script):
    tree = ast.parse(script.read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "common" in imported, f"{script.name} does not import bench/common.py"
    assert "Path(__file__).resolve().parent.parent" not in script.read_text(), "its own copy of the opening"
