"""run_all.py rewrites only its generated block of RESULTS.md, with the machine, the date and each table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_run_all_replaces_its_block_and_keeps_the_rest(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "Testing" / "Benchmarks" / "run_all.py")
    runAll = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runAll)
    script = tmp_path / "bench_fake.py"
    script.write_text("print('| contender | ratio |')\nprint('|---|---|')\nprint('| ours | 1.02x |')\n")
    monkeypatch.setattr(runAll, "HERE", tmp_path)
    monkeypatch.setattr(runAll, "BENCHMARKS", {"fake": ("bench_fake.py", [], "a fake benchmark")})
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Hand-written reading\n\nKept.\n")
    for _ in range(2):
        monkeypatch.setattr(sys, "argv", ["run_all.py", "--results", str(results)])
        assert runAll.main() == 0
    text = results.read_text()
    assert text.count(runAll.BEGIN) == 1 and text.count("| ours | 1.02x |") == 1
    assert text.index(runAll.END) < text.index("## Hand-written reading") and "Kept." in text
    assert "Date: " in text and "cores" in text and "torch " in text and "### fake: a fake benchmark" in text
