"""``nasp rnn search --max-params``: the recurrent cell's matrices, through the core's budgeted
projection (k = 1); in DARTS' space every cell has the same matrices, so the budget checks the
size and never changes the cell."""
from __future__ import annotations

import json

from click.testing import CliRunner

from nasp.cli import main
from nasp.rnn.genotypes import GENOTYPES
from nasp.rnn.model import FixedCell, TRAIN_DROPOUTS
from nasp.rnn.search import cell_matrices
from nasp.rnn.spaces import SPACES


def test_cell_matrices_are_the_fixed_cells_parameters():
    cell = FixedCell(GENOTYPES.get("DARTS_V2"), 12, 10, TRAIN_DROPOUTS)
    assert cell_matrices(SPACES.get("darts"), 12, 10) == sum(p.numel() for p in cell.parameters())


def test_search_with_a_params_budget_reports_it(corpus_dir, tiny, tmp_path):
    out = tmp_path / "r"
    result = CliRunner().invoke(main, ["rnn", "search", "--data", str(corpus_dir), "--epochs", "1", "--threads", "1",
                                       *tiny, "--max-params", "1.5K", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.output.strip().splitlines()[-1])
    assert s["cell_params"] == 1280 and s["budget"]["limit"] == 1500 and s["budget"]["fits"]
    assert s["budget"]["binding"] is False and s["budget"]["cheapest"] == s["budget"]["most_expensive"] == 1280
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["cell_params"] == 1280
