"""EASE^R and ItemKNN: closed forms against direct references, the pipeline's use of them, and
their one-line errors."""
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from click.testing import CliRunner

from nasp.cli import main
from nasp.errors import NaspError
from sif import SIF, itemitem
from sif.data import Interactions
from sif.itemitem import ItemItemConfig, ItemItemNetwork, check_memory, ease, interaction_matrix, itemknn, parse_grid


def _random_matrix(users: int = 30, items: int = 12, density: float = 0.3, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((users, items)) < density).astype(np.float32)
    return sp.csr_matrix(dense)


def test_ease_equals_the_dense_numpy_reference():
    x = _random_matrix()
    lam = 7.5
    dense = x.toarray().astype(np.float64)
    p = np.linalg.inv(dense.T @ dense + lam * np.eye(dense.shape[1]))
    reference = np.eye(dense.shape[1]) - p / np.diag(p)  # B = I - P diag(1/diag P)
    b = ease(x, lam).numpy()
    assert np.allclose(np.diag(reference), 0, atol=1e-9) and np.allclose(np.diag(b), 0)
    assert np.allclose(b, reference, atol=1e-4)


def test_itemknn_equals_the_brute_force_reference():
    x = _random_matrix(seed=1)
    k, shrink = 3, 2.0
    dense = x.toarray().astype(np.float64)
    items = dense.shape[1]
    reference = np.zeros((items, items))
    for j in range(items):
        sims = np.array([dense[:, i] @ dense[:, j] / (np.linalg.norm(dense[:, i]) * np.linalg.norm(dense[:, j]) + shrink)
                         if i != j else -np.inf for i in range(items)])
        for i in np.argsort(-sims, kind="stable")[:k]:
            reference[i, j] = sims[i]
    b = itemknn(x, k, shrink).numpy()
    assert ((b != 0).sum(axis=0) <= k).all() and np.allclose(np.diag(b), 0)
    # ties may pick other neighbours of equal similarity: each column's kept values are the same
    assert np.allclose(np.sort(b, axis=0), np.sort(reference, axis=0), atol=1e-5)


def test_scores_are_x_times_b():
    x = _random_matrix(seed=2)
    config = ItemItemConfig("ease", x.shape[0], x.shape[1], lambdas=(5.0,))
    net = ItemItemNetwork(config)
    net.B = ease(x, 5.0)
    net.set_interactions(x)
    users = torch.tensor([0, 3, 7])
    expected = torch.from_numpy(x.toarray()[[0, 3, 7]]) @ net.B
    assert torch.allclose(net.score_all(users), expected, atol=1e-6)
    items = torch.tensor([1, 4, 2])
    assert torch.allclose(net.predict(users, items), expected[torch.arange(3), items], atol=1e-6)
    assert net.predict(torch.tensor([-1]), torch.tensor([1])).item() == 0.0


def test_interaction_matrix_counts_a_pair_once():
    data = Interactions(torch.tensor([0, 0, 1, -1]), torch.tensor([2, 2, 1, 0]), torch.ones(4))
    x = interaction_matrix(data, 2, 3)
    assert x.toarray().tolist() == [[0, 0, 1], [0, 1, 0]]


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("model", ["ease", "itemknn"])
def test_train_save_load_recommend(tiny_ratings, tmp_path, model):
    """Each model trains from the CLI (its setting chosen on validation), saves, loads and
    recommends, never an item the user has interacted with; the API gives the same scores."""
    out = tmp_path / model
    r = _cli("sif", "train", "--ifc", model, "--task", "ranking", "--data", tiny_ratings, "--json", "--out", out,
             "--ease-lambda", "1,10,100", "--knn-neighbours", "5,10")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    grid = summary[f"{model}_grid_valid_ndcg@10"]
    assert len(grid) == 3 if model == "ease" else len(grid) == 2
    assert summary["valid_ndcg@10"] == max(grid.values()) and summary["test_ndcg@10"] > 0
    loaded = SIF.load(out)
    for user in loaded.model.user_ids[:5]:
        top = loaded.recommend(user, k=10)
        rated = {loaded.model.item_ids[i] for i in loaded.model.rated(user).tolist()}
        assert len(top) == 10 and not rated & set(top.item)
    api = SIF(task="ranking", ifc=model, ease_lambda="1,10,100", knn_neighbours=[5, 10], verbose=False).fit(tiny_ratings)
    assert api.summary_["test_ndcg@10"] == summary["test_ndcg@10"]
    r = _cli("sif", "recommend", "--model", out, "--user", loaded.model.user_ids[0], "-k", "3", "--json")
    assert [row["item"] for row in json.loads(r.stdout)["items"]] == loaded.recommend(loaded.model.user_ids[0], 3).item.tolist()


def test_refit_recomputes_on_train_and_validation(tiny_ratings):
    plain = SIF(task="ranking", ifc="ease", ease_lambda=10, verbose=False).fit(tiny_ratings).summary_
    refit = SIF(task="ranking", ifc="ease", ease_lambda=10, refit=True, verbose=False).fit(tiny_ratings).summary_
    assert plain["test_ndcg@10_source"] == "closed form" and refit["test_ndcg@10_source"] == "refit"
    assert refit["early_stopped_test_ndcg@10"] == plain["test_ndcg@10"] and refit["test_ndcg@10"] != plain["test_ndcg@10"]


def test_ease_is_a_default_ranking_baseline_left_out_where_it_does_not_fit(tiny_ratings, monkeypatch, caplog):
    fitted = SIF(task="ranking", epochs=2, max_epochs=2, dim=8, verbose=False).fit(tiny_ratings).summary_
    assert set(fitted["baseline_valid_ndcg@10"]) == {"multiply", "ease"}
    monkeypatch.setattr(itemitem, "available_memory", lambda device: 1000)
    fitted = SIF(task="ranking", epochs=2, max_epochs=2, dim=8, verbose=False).fit(tiny_ratings).summary_
    assert set(fitted["baseline_valid_ndcg@10"]) == {"multiply"}
    assert "the default baseline ease is left out: ease on 40 items needs" in caplog.text
    with pytest.raises(NaspError, match=r"ease on 40 items needs 0.0 GiB .* and 0.0 GiB is available"):
        SIF(task="ranking", ifc="ease", verbose=False).fit(tiny_ratings)


def test_memory_guard_names_the_size():
    with pytest.raises(NaspError, match=r"ease on 26,744 items needs 8.0 GiB \(3 item x item float32 matrices\) "
                                        r"and 2.0 GiB is available"):
        check_memory("ease", 26744, available=2 * 2**30)
    assert check_memory("ease", 100, available=2**30) == 3 * 100 * 100 * 4


@pytest.mark.parametrize("args, message", [
    (["--ease-lambda", "0"], "Error: --ease-lambda '0': must be a number > 0"),
    (["--ease-lambda", "-5,10"], "Error: --ease-lambda '-5': must be a number > 0"),
    (["--ease-lambda", "x"], "Error: --ease-lambda 'x': give a number or a comma-separated list of numbers"),
    (["--knn-neighbours", "0"], "Error: --knn-neighbours '0': must be a whole number > 0"),
    (["--knn-neighbours", "2.5"], "Error: --knn-neighbours '2.5': must be a whole number > 0"),
    (["--task", "rating"], "Error: ease is a ranking model"),
])
def test_bad_settings_are_one_line(tiny_ratings, tmp_path, args, message):
    r = _cli("sif", "train", "--ifc", "ease", "--task", "ranking", "--data", tiny_ratings, *args, "--out", tmp_path / "x")
    assert r.exit_code == 1 and r.output.startswith(message), r.output
    assert not (tmp_path / "x").exists()
    r = _cli("sif", "train", "--ifc", "itemknn", "--task", "ranking", "--knn-shrink", "-1", "--data", tiny_ratings)
    assert r.exit_code == 2 and "--knn-shrink" in r.output


def test_parse_grid():
    assert parse_grid("10, 20,10", "--x", integer=True) == (10, 20)
    assert parse_grid(5.0, "--x", integer=False) == (5.0,)
    assert parse_grid([1, 2], "--x", integer=True) == (1, 2)


def test_itemknn_without_shrink_gives_an_untrained_item_no_neighbours():
    x = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0]], dtype=np.float32))  # item 2: no interaction
    b = itemknn(x, 2, 0.0)
    assert torch.isfinite(b).all() and (b[:, 2] == 0).all() and (b[2] == 0).all()


def test_predict_in_chunks_equals_the_whole_block():
    x = _random_matrix(users=50, items=9, seed=4)
    net = ItemItemNetwork(ItemItemConfig("ease", 50, 9, lambdas=(3.0,)))
    net.B = ease(x, 3.0)
    net.set_interactions(x)
    users, items = torch.randint(0, 50, (200,)), torch.randint(0, 9, (200,))
    whole = (net.user_rows(torch.arange(50)) @ net.B)[users, items]
    assert torch.allclose(net.predict(users, items, chunk=7), whole, atol=1e-6)
