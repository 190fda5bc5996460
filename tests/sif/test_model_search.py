
import pytest
import torch

from nasp.mixing import Mixing
from nasp.runs import RunDir
from sif import pipeline
from sif.engine import TrainSettings
from sif.model import ModelConfig, SIFNetwork
from sif.space import INTERACTIONS, SEARCH_SPACE

from .conftest import planted_ratings, write_udata


@pytest.mark.parametrize("name", INTERACTIONS.names())
def test_every_interaction_scores_one_value_per_pair(name):
    op = INTERACTIONS.get(name)(8)
    p, q = torch.randn(5, 8), torch.randn(5, 8)
    assert op(p, q).shape == (5,)


@pytest.mark.parametrize("mixing", list(Mixing))
def test_network_forward_shapes_under_every_mixing(mixing):
    net = SIFNetwork(ModelConfig(7, 9, dim=4))
    net.mixing = mixing
    users, items = torch.tensor([0, 3, 6]), torch.tensor([8, 1, 0])
    assert net(users, items).shape == (3,)
    assert set(net.derive()["alpha"]) == set(SEARCH_SPACE)


def test_unseen_users_and_items_get_biases_only_and_predictions_are_clipped():
    net = SIFNetwork(ModelConfig(3, 3, dim=4, global_mean=3.0))
    with torch.no_grad():
        net.user_emb.weight.normal_()
        net.item_emb.weight.normal_()
        net.item_bias.weight.fill_(0.5)
        net.known_users[2] = False
        net.rating_range.copy_(torch.tensor([1.0, 3.2]))
    pred = net.predict(torch.tensor([2, -1, 0]), torch.tensor([0, 1, 1]))
    assert pred[0].item() == pytest.approx(3.2)  # 3 + 0 + 0.5, clipped to the training range
    assert pred[1].item() == pytest.approx(3.2)
    assert 1.0 - 1e-6 <= pred[2].item() <= 3.2 + 1e-6


def _search(tmp_path, op):
    """Search on 40,000 ratings planted with ``op`` on 1-d embeddings (an identifiable setting:
    with wider embeddings and biases, multiply can absorb additive and max/min effects)."""
    folder = tmp_path / op
    folder.mkdir()
    write_udata(folder / "u.data", planted_ratings(op, users=400, items=300, n=40000, dim=1, noise=0.05))
    splits, _ = pipeline.load_splits(pipeline.DataOptions(str(folder / "u.data")))
    config = ModelConfig(splits.ids.num_users, splits.ids.num_items, dim=1, elementwise=False,
                         global_mean=float(splits.train.ratings.mean()))
    settings = TrainSettings(batch_size=512, arch_lr=1e-3, reg=0.0)
    arch, _ = pipeline.search(RunDir(folder / "run"), splits, config, settings, "nasp", 10, 0, torch.device("cpu"),
                              warmup_epochs=3)
    return arch


@pytest.mark.parametrize("op", ["multiply", "max"])
def test_search_recovers_the_planted_interaction(tmp_path, op):
    torch.manual_seed(0)
    arch = _search(tmp_path, op)
    assert arch["interaction"] == op, arch["alpha"]
    assert arch["alpha"][op] == max(arch["alpha"].values())


def test_short_real_run_beats_the_global_mean(ml100k_path, tmp_path):
    splits, _ = pipeline.load_splits(pipeline.DataOptions(str(ml100k_path)))
    mean = splits.train.ratings.mean()
    global_rmse = float((splits.test.ratings - mean).pow(2).mean().sqrt())
    config = ModelConfig(splits.ids.num_users, splits.ids.num_items, dim=32, ops=("multiply",), elementwise=False,
                         global_mean=float(mean))
    run = RunDir(tmp_path / "r")
    run.write_config({})
    _, summary = pipeline.train(run, splits, config, TrainSettings(), 3, 3, 0, torch.device("cpu"))
    assert summary["test_rmse"] < global_rmse - 0.1, (summary["test_rmse"], global_rmse)
    assert (tmp_path / "r" / "metrics.jsonl").read_text().count("\n") == 3
