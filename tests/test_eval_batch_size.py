"""``--eval-batch-size 0`` is refused like ``--batch-size 0``, before a run directory exists."""
import pytest
from click.testing import CliRunner

from nasp.cli import main


@pytest.mark.parametrize("command", [["cnn", "search", "--data", "digits"], ["cnn", "train", "--data", "digits"],
                                     ["rnn", "search"], ["rnn", "train"]])
def test_eval_batch_size_zero_is_refused(tmp_path, command):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, [*command, "--eval-batch-size", "0", "--out", str(out)])
    assert r.exit_code != 0 and "--eval-batch-size" in r.output and "Traceback" not in r.output, r.output
    assert not out.exists()
