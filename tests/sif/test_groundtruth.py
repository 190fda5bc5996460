"""The autocf ground truth: the architectures benchmarked and the reader of the results file."""
import json

import pytest

from nasp.errors import NaspError
from sif.groundtruth import GroundTruth, all_architectures, arch_key, bench_architectures, full_choices, neighbours
from sif.joint import DEFAULT_CHOICES
from sif.space import SPACES


def test_the_benchmarked_architectures():
    space = SPACES["autocf"]
    assert len(all_architectures()) == 3024 == len({arch_key(c) for c in all_architectures()})
    archs = bench_architectures(samples=300, seed=0)
    groups = [g for g, _ in archs]
    keys = [arch_key(c) for _, c in archs]
    assert len(keys) == len(set(keys)) and keys[0] == "default"
    alternatives = [len(names) - 1 for names in space.values()]
    assert groups.count("one-change") == sum(alternatives) == len(list(neighbours(DEFAULT_CHOICES)))
    pairs = sum(a * b for i, a in enumerate(alternatives) for b in alternatives[i + 1:])
    assert groups.count("two-change") == pairs
    assert 0 < groups.count("random") <= 300  # the sample's neighbours of the default are measured once
    assert archs == bench_architectures(samples=300, seed=0)


def _record(task, seed, changes, valid, test, group="one-change"):
    return {"task": task, "seed": seed, "arch": arch_key(full_choices(changes)), "group": group, "valid": valid, "test": test,
            "epochs": 5, "seconds": 1.0}


def test_the_reader_round_trips_and_ranks_paired_to_the_default(tmp_path):
    path = tmp_path / "bench.jsonl"
    rows = [_record("rating", 0, {}, 0.90, 0.91, "default"), _record("rating", 1, {}, 0.80, 0.81, "default"),
            _record("rating", 0, {"item_input": "both"}, 0.89, 0.90), _record("rating", 1, {"item_input": "both"}, 0.79, 0.80),
            _record("rating", 1, {"op": "max"}, 0.795, 0.81),  # seed 1 only: its raw mean flatters it
            _record("ranking", 0, {}, 0.25, 0.30, "default")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    truth = GroundTruth.read(path)
    assert len(truth.rows) == 6
    table = truth.table("rating")
    assert list(table.index) == ["item_input=both", "op=max", "default"]  # by paired difference, not raw mean
    assert truth.score("rating", {"op": "max"})["valid_vs_default"] == pytest.approx(-0.005)
    ranked = truth.rank("rating", "default")
    assert ranked["rank"] == 3 and ranked["of"] == 3 and ranked["regret"] == pytest.approx(0.01)
    assert truth.rank("rating", {"item_input": "both"}, by="test")["rank"] == 1
    assert truth.score("ranking", {})["valid"] == 0.25
    placed = truth.place("rating", {"op": "max"})  # a search's result, placed by validation and by test
    assert placed["measured"] and (placed["valid_rank"], placed["test_rank"], placed["of"]) == (2, 2, 3)
    assert placed["valid_regret"] == pytest.approx(0.005) and placed["test_regret"] == pytest.approx(0.01)
    assert truth.place("rating", {"op": "min"}) == {"arch": "op=min", "measured": False}  # not trained (yet)
    assert truth.best("rating") == pytest.approx(-0.01) and truth.best("rating", "test") == pytest.approx(-0.01)
    assert truth.best("ranking") == 0.0  # larger is better there; only the default measured
    mine = truth.table("rating")
    mine["valid"] = 0.0  # a caller's copy: the cached table stays as it was
    assert truth.table("rating")["valid"].tolist() != [0.0, 0.0, 0.0]


def test_random_search_simulated_on_the_ground_truth_keeps_the_best_of_its_draws_by_validation(tmp_path):
    path = tmp_path / "bench.jsonl"
    rows = [_record("rating", 0, {}, 0.90, 0.90, "default"),
            _record("rating", 0, {"op": "max"}, 0.88, 0.91, "random"),    # best by validation, not by test
            _record("rating", 0, {"op": "min"}, 0.89, 0.89, "random"),
            _record("rating", 0, {"op": "plus"}, 0.95, 0.95, "random"),
            _record("rating", 0, {"item_input": "both"}, 0.87, 0.88)]    # measured, but not a uniform draw
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    truth = GroundTruth.read(path)
    every = truth.random_search("rating", 3, runs=50)  # draws the whole sample: always keeps op=max
    assert every["trainings"] == 3 and every["sample"] == 3
    assert every["valid_regret"] == pytest.approx(0.01) and every["test_regret"] == pytest.approx(0.03)
    assert every["valid_regret_std"] == pytest.approx(0.0)
    one = truth.random_search("rating", 1, runs=3000, seed=1)  # one draw: the sample's mean regret
    assert one["valid_regret"] == pytest.approx((0.01 + 0.02 + 0.08) / 3, abs=0.003)
    assert truth.random_search("rating", 10, runs=5)["trainings"] == 3  # no more draws than the sample holds
    with pytest.raises(NaspError, match="at least one training"):
        truth.random_search("rating", 0)
    with pytest.raises(NaspError, match="no uniformly sampled architectures in the ranking ground truth"):
        truth.random_search("ranking", 3)


def test_bad_queries_and_files_are_one_line(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps(_record("rating", 0, {}, 0.9, 0.9, "default")) + "\n")
    truth = GroundTruth.read(path)
    with pytest.raises(NaspError, match="'op=max' is not in the rating ground truth"):
        truth.score("rating", {"op": "max"})
    with pytest.raises(NaspError, match="op='dot' is not in the autocf space"):
        truth.score("rating", {"op": "dot"})
    with pytest.raises(NaspError, match="unknown row 'ops'"):
        truth.score("rating", {"ops": "max"})
    with pytest.raises(NaspError, match="unknown task 'ratings'"):
        truth.table("ratings")
    with pytest.raises(NaspError, match="no such ground-truth file"):
        GroundTruth.read(tmp_path / "none.jsonl")
    path.write_text('{"task": "rating"}\n')
    with pytest.raises(NaspError, match=r"bench.jsonl:1: a ground-truth record needs"):
        GroundTruth.read(path)
    path.write_text("not json\n")
    with pytest.raises(NaspError, match=r"bench.jsonl:1: not a JSON line"):
        GroundTruth.read(path)
