"""docs/results/ pages: the generated tables match the JSON in benchmarks/results/."""

import importlib.util
import json
import sys
from pathlib import Path

# benchmarks/ is a folder of scripts, not a package: load report.py by its path
_spec = importlib.util.spec_from_file_location(
    "nasp_benchmarks_report", Path(__file__).resolve().parents[1] / "benchmarks" / "report.py")
report = importlib.util.module_from_spec(_spec)
sys.modules.setdefault(_spec.name, report)  # dataclasses look their module up there
_spec.loader.exec_module(report)


def test_pages_are_current(capsys):
    rc = report.main(["--check"])
    assert rc == 0, capsys.readouterr().out


def test_renderer_on_a_tiny_json():
    tiny = {"rows": [
        {"strategy": "nasp", "median_step_s": 2.0, "time_vs_nasp": 1.0, "peak_memory_mb": 100.4, "memory_vs_nasp": 1.0},
        {"strategy": "darts", "median_step_s": 5.0, "time_vs_nasp": 2.5, "peak_memory_mb": 250.6, "memory_vs_nasp": 2.5},
    ]}
    assert report.TABLES["cnn_search_speed"].render(tiny) == [
        "| strategy | median s / step | time x NASP | peak memory MB (RSS growth) | memory x NASP |",
        "|---|---|---|---|---|",
        "| nasp | 2.00 | 1.00 | 100 | 1.00 |",
        "| darts | 5.00 | 2.50 | 251 | 2.50 |",
    ]


def test_check_names_a_stale_table(tmp_path, capsys):
    # A copy of the pages and JSON with one number edited by hand: --check fails and names it.
    for page in report.PAGES:
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / page).write_text((report.ROOT / page).read_text())
    results = tmp_path / report.RESULTS
    results.mkdir(parents=True)
    for t in report.TABLES.values():
        for f in t.sources:
            (results / f).write_text((report.ROOT / report.RESULTS / f).read_text())
    d = json.loads((results / "ddp_scaling_sif.json").read_text())
    d["results"][1]["speedup"] = 0.123
    (results / "ddp_scaling_sif.json").write_text(json.dumps(d))
    assert report.main(["--check"], root=tmp_path) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [line for line in out if "docs/results/sif.md: table ddp_scaling_sif differs" in line] and len(out) == 1
    assert report.main([], root=tmp_path) == 0
    assert "| ml-100k | 0.12x | 0.92x |" in (tmp_path / "docs/results/sif.md").read_text()
    assert report.main(["--check"], root=tmp_path) == 0
