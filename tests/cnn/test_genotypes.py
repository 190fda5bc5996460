import json

import pytest

from nasp import NaspError
from nasp.cnn.genotypes import GENOTYPES, Genotype, check_space, load_genotype, save_genotype
from nasp.cnn.spaces import SPACES


def test_published_cells_are_named():
    assert {"DARTS_V1", "DARTS_V2", "NASP"} <= set(GENOTYPES.names())
    v2 = GENOTYPES.get("DARTS_V2")
    assert v2.normal[-1] == ("dil_conv_3x3", 2) and v2.normal_concat == (2, 3, 4, 5)
    nasp = GENOTYPES.get("NASP")
    assert ("conv_3x3", 1) in nasp.normal  # the authors' 'conv 3x3' spelling resolved
    check_space(nasp, SPACES.get("nasp12").normal, SPACES.get("nasp12").reduce)
    check_space(v2, SPACES.get("darts").normal, SPACES.get("darts").reduce)


@pytest.mark.parametrize("name", ["DARTS_V1", "DARTS_V2", "NASP"])
def test_json_and_text_round_trips(name, tmp_path):
    g = GENOTYPES.get(name)
    assert Genotype.from_json(json.loads(json.dumps(g.to_json()))) == g
    assert Genotype.from_text(g.to_text()) == g
    for suffix in (".json", ".txt"):
        path = tmp_path / f"cell{suffix}"
        save_genotype(g, path)
        assert load_genotype(str(path)) == g
    assert load_genotype(g.to_text()) == g


def test_darts_genotypes_file_with_several_cells(tmp_path):
    path = tmp_path / "genotypes.py"
    path.write_text(
        "from collections import namedtuple\nGenotype = namedtuple('Genotype', 'normal normal_concat reduce reduce_concat')\n"
        f"A = {GENOTYPES.get('DARTS_V1').to_text()}\nB = {GENOTYPES.get('DARTS_V2').to_text().replace('[2, 3, 4, 5]', 'range(2, 6)')}\n"
    )
    with pytest.raises(NaspError, match="holds 2 genotypes .*FILE:NAME"):
        load_genotype(str(path))
    assert load_genotype(f"{path}:B") == GENOTYPES.get("DARTS_V2")
    with pytest.raises(NaspError, match="no genotype named 'C'"):
        load_genotype(f"{path}:C")


def test_run_directory_and_wrapped_json(tmp_path):
    g = GENOTYPES.get("DARTS_V1")
    (tmp_path / "arch.json").write_text(json.dumps(g.to_json()))
    assert load_genotype(str(tmp_path)) == g


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["normal"].__setitem__(0, ["conv_9x9", 0]), "normal\\[0\\]: unknown op 'conv_9x9'"),
        (lambda d: d["normal"].__setitem__(0, ["sep_conv_3x3", 2]), "input 2 of node 0 must be an integer in \\[0, 1\\]"),
        (lambda d: d["reduce"].__setitem__(7, ["skip_connect", -1]), "reduce\\[7\\]: input -1 of node 3"),
        (lambda d: d["normal"].pop(), "two per node"),
        (lambda d: d.__setitem__("reduce_concat", [2, 9]), "reduce_concat: index 9"),
        (lambda d: d.pop("reduce"), "missing key\\(s\\) reduce"),
        (lambda d: d["normal"].__setitem__(1, "sep_conv_3x3"), "not an \\(op, input\\) pair"),
    ],
)
def test_validation_errors(mutate, message, tmp_path):
    d = GENOTYPES.get("DARTS_V2").to_json()
    mutate(d)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(NaspError, match=message):
        load_genotype(str(path))


def test_bad_text_and_missing_files(tmp_path):
    with pytest.raises(NaspError, match="file not found"):
        load_genotype(str(tmp_path / "nope.json"))
    with pytest.raises(NaspError, match="neither a file nor a known genotype"):
        load_genotype("DARTS_V3")
    bad = tmp_path / "bad.txt"
    bad.write_text("Genotype(normal=[('sep_conv_3x3', 0)")
    with pytest.raises(NaspError, match="not valid Genotype"):
        load_genotype(str(bad))
    bad.write_text("Genotype(normal=__import__('os').system('true'), normal_concat=[2], reduce=[], reduce_concat=[2])")
    with pytest.raises(NaspError, match="only literal"):
        load_genotype(str(bad))
    bad.write_text("{not json")
    with pytest.raises(NaspError, match="line 1: not valid JSON"):
        load_genotype(str(bad))
