"""LightGCN: its propagation against a dense computation, its gradient, the pipeline's use of it
(train, save, load, recommend, a search's baseline) and its one-line errors."""
import json

import pytest
import torch
from click.testing import CliRunner

from nasp.cli import main
from sif import SIF
from sif.joint import config_from_dict, network_for
from sif.lightgcn import LightGCNConfig, LightGCNNetwork
from sif.ranking import bpr_loss

#: a tiny graph of 4 users and 5 items: a pair given twice, user 3 and item 4 without edges
USERS = torch.tensor([0, 0, 1, 2, 2, 2, 0])
ITEMS = torch.tensor([0, 1, 1, 0, 2, 3, 1])


def _network(layers: int = 2, dim: int = 3) -> LightGCNNetwork:
    torch.manual_seed(0)
    net = LightGCNNetwork(LightGCNConfig(4, 5, dim=dim, layers=layers))
    net.set_history(USERS, ITEMS)
    return net


def _dense_final(net: LightGCNNetwork, table: torch.Tensor) -> torch.Tensor:
    """The mean of layers 0..K computed with the dense normalised adjacency D^-1/2 A D^-1/2."""
    n = net.config.num_users
    a = torch.zeros(n + net.config.num_items, n + net.config.num_items)
    a[USERS, n + ITEMS] = 1.0
    a[n + ITEMS, USERS] = 1.0
    degrees = a.sum(1)
    scale = torch.where(degrees > 0, degrees.pow(-0.5), torch.zeros_like(degrees))
    norm = scale[:, None] * a * scale[None, :]
    layers, layer = [table], table
    for _ in range(net.config.layers):
        layer = norm @ layer
        layers.append(layer)
    return torch.stack(layers).mean(0)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_propagation_equals_the_dense_computation(layers):
    net = _network(layers)
    expected = _dense_final(net, net.embedding.detach())
    assert torch.allclose(net.propagate(), expected, atol=1e-6)
    assert torch.allclose(net.propagate()[3], net.embedding[3] / (layers + 1))  # no edges: its layer 0 alone
    users, items = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 1, 0, 2])
    u, v = expected[:4], expected[4:]
    assert torch.allclose(net.score_all(users), u[users] @ v.T, atol=1e-6)
    assert torch.allclose(net.predict(users, items), (u[users] * v[items]).sum(-1), atol=1e-6)
    assert net.predict(torch.tensor([-1]), torch.tensor([1])).item() == 0.0


def test_gradient_flows_to_the_table_as_the_dense_computation():
    net = _network()
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([1, 1, 3]), torch.tensor([4, 2, 1])
    loss = bpr_loss(net(users, pos), net(users, neg).unsqueeze(1)) + 1e-2 * net.regularization(users, torch.cat([pos, neg]))
    loss.backward()
    table = net.embedding.detach().clone().requires_grad_(True)
    final = _dense_final(net, table)
    u, v = final[:4], final[4:]
    e = table
    dense = bpr_loss((u[users] * v[pos]).sum(-1), (u[users] * v[neg]).sum(-1).unsqueeze(1)) + 1e-2 * (
        e[users].pow(2).sum() + e[4 + torch.cat([pos, neg])].pow(2).sum()) / 3
    dense.backward()
    assert net.embedding.grad.abs().sum() > 0 and torch.allclose(net.embedding.grad, table.grad, atol=1e-6)
    assert net.embedding.grad[4 + 0].abs().sum() > 0  # item 0 is in no batch row: reached through the graph


def test_evaluation_propagates_once_until_the_table_changes():
    net = _network()
    with torch.no_grad():
        first = net.score_all(torch.tensor([0]))
        assert net.final()[0].data_ptr() == net.final()[0].data_ptr()  # kept, not propagated again
        net.embedding.mul_(2.0)
    assert torch.allclose(net.score_all(torch.tensor([0])), 4 * first, atol=1e-6)  # recomputed


def test_saved_state_loads_with_its_graph():
    net = _network()
    fresh = network_for(config_from_dict(json.loads(json.dumps(net.config.to_dict()))))
    fresh.load_model_state(net.state_dict())
    assert torch.allclose(fresh.propagate(), net.propagate())
    bad = {**net.state_dict(), "edges": torch.tensor([[0], [5]])}
    with pytest.raises(ValueError, match="out of range"):
        fresh.load_model_state(bad)


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_train_save_load_recommend(tiny_ratings, tmp_path):
    """LightGCN trains from the CLI by the run loop (early stopping, checkpoint), saves, loads
    and recommends, never an item the user has interacted with; the API trains it the same."""
    out = tmp_path / "lightgcn"
    r = _cli("sif", "train", "--ifc", "lightgcn", "--task", "ranking", "--data", tiny_ratings, "--json", "--out", out,
             "--max-epochs", "3", "--dim", "8", "--gcn-layers", "3", "--lr", "0.01")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["interaction"] == "lightgcn" and summary["epochs_trained"] == 3 and summary["test_ndcg@10"] > 0
    assert (out / "checkpoint.pt").exists() and json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["epoch"] == 1
    loaded = SIF.load(out)
    assert loaded.model.net.config.layers == 3 and loaded.model.net.config.dim == 8
    for user in loaded.model.user_ids[:5]:
        top = loaded.recommend(user, k=10)
        rated = {loaded.model.item_ids[i] for i in loaded.model.rated(user).tolist()}
        assert len(top) == 10 and not rated & set(top.item)
    r = _cli("sif", "recommend", "--model", out, "--user", loaded.model.user_ids[0], "-k", "3", "--json")
    assert [row["item"] for row in json.loads(r.stdout)["items"]] == loaded.recommend(loaded.model.user_ids[0], 3).item.tolist()
    api = SIF(task="ranking", ifc="lightgcn", max_epochs=3, dim=8, gcn_layers=3, lr=0.01, verbose=False).fit(tiny_ratings)
    assert api.summary_["test_ndcg@10"] == pytest.approx(summary["test_ndcg@10"])


def test_a_baseline_of_the_search(tiny_ratings):
    fitted = SIF(task="ranking", epochs=1, max_epochs=2, dim=8, baselines="lightgcn", verbose=False).fit(tiny_ratings).summary_
    assert set(fitted["baseline_valid_ndcg@10"]) == {"lightgcn"}


@pytest.mark.parametrize("args, message", [
    (["--gcn-layers", "0"], "Error: --gcn-layers 0: must be a whole number from 1 to 10"),
    (["--gcn-layers", "11"], "Error: --gcn-layers 11: must be a whole number from 1 to 10"),
    (["--task", "rating"], "Error: lightgcn is a ranking model (it is trained by BPR on interactions and scores them, "
                           "not ratings): use it with --task ranking"),
])
def test_bad_input_is_one_line(tiny_ratings, tmp_path, args, message):
    r = _cli("sif", "train", "--ifc", "lightgcn", "--task", "ranking", "--data", tiny_ratings, *args, "--out", tmp_path / "x")
    assert r.exit_code == 1 and r.output.startswith(message) and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "x").exists()
    r = _cli("sif", "search", "--baselines", "lightgcn", "--data", tiny_ratings, "--out", tmp_path / "y")
    assert r.exit_code == 1 and r.output.startswith("Error: lightgcn is a ranking model"), r.output
    assert not (tmp_path / "y").exists()


class Killed(Exception):
    pass


def test_a_killed_training_resumes_to_the_same_model(tiny_ratings, tmp_path, monkeypatch):
    """Checkpoints hold the table, the graph's pairs and Adam's state: killed after its second
    epoch, a run resumed with --resume ends as the uninterrupted one."""
    from nasp.runs import RunDir

    args = ["sif", "train", "--ifc", "lightgcn", "--task", "ranking", "--data", tiny_ratings, "--max-epochs", "4",
            "--patience", "4", "--dim", "8", "--lr", "0.01", "--json"]
    whole = json.loads(_cli(*args, "--out", tmp_path / "whole").output)
    real_save, saved = RunDir.save_checkpoint, []

    def killing(self, state):
        real_save(self, state)
        saved.append(1)
        if len(saved) == 2:
            raise Killed

    monkeypatch.setattr(RunDir, "save_checkpoint", killing)
    with pytest.raises(Killed):
        _cli(*args, "--out", tmp_path / "killed")
    monkeypatch.setattr(RunDir, "save_checkpoint", real_save)
    again = _cli("sif", "train", "--resume", "--out", tmp_path / "killed", "--json")
    assert again.exit_code == 0, again.output
    resumed = json.loads(again.output)
    for key in ("valid_ndcg@10", "test_ndcg@10", "test_recall@10", "best_epoch", "epochs_trained"):
        assert resumed[key] == whole[key], key
