import json

import pytest

from nasp import NaspError
from nasp.rnn import GENOTYPES, SPACES, RecurrentGenotype, load_genotype, make_genotype


def test_json_round_trip_and_published_cell(tmp_path):
    g = GENOTYPES.get("DARTS_V2")
    assert g.recurrent[0] == ("sigmoid", 0) and g.steps == 8 and g.concat == tuple(range(1, 9))
    data = json.loads(json.dumps(g.to_json()))
    assert RecurrentGenotype.from_json(data, space=SPACES.get("darts")) == g
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(g.to_json()))
    assert load_genotype(path) == g
    assert load_genotype(tmp_path) == g  # a run directory
    assert load_genotype("DARTS_V1").recurrent[5] == ("identity", 1)


@pytest.mark.parametrize("recurrent, message", [
    ([["swish", 0]], r"node 1: unknown activation 'swish'; choose one of: tanh"),
    ([["tanh", 0], ["relu", 2]], r"node 2: bad predecessor 2; must be an integer in 0..1"),
    ([["tanh", -1]], r"node 1: bad predecessor -1"),
    ([["tanh", "0"]], r"node 1: bad predecessor '0'"),
    ([["tanh"]], r"node 1: expected \[activation, predecessor\]"),
    ([], r"'recurrent' must be a non-empty list"),
])
def test_bad_genotypes_raise_one_clear_error(recurrent, message):
    with pytest.raises(NaspError, match=message):
        RecurrentGenotype.from_json({"recurrent": recurrent}, source="g.json")


def test_bad_concat_steps_and_files(tmp_path):
    with pytest.raises(NaspError, match="bad concat node 3"):
        RecurrentGenotype.from_json({"recurrent": [["tanh", 0], ["relu", 1]], "concat": [1, 3]})
    with pytest.raises(NaspError, match="2 nodes, but space 'darts' has 8"):
        RecurrentGenotype.from_json({"recurrent": [["tanh", 0], ["relu", 1]]}, space=SPACES.get("darts"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(NaspError, match="bad.json: line 1: not valid JSON"):
        load_genotype(bad)
    with pytest.raises(NaspError, match="neither a file nor a published genotype"):
        load_genotype("DARTS_V9")
    with pytest.raises(NaspError, match="has no arch.json"):
        load_genotype(tmp_path)
    assert make_genotype([("tanh", 0)]).concat == (1,)
