"""The fast paths of SIF's training loop give the same numbers as the plain ones."""
from __future__ import annotations

import dataclasses

import torch

from sif.data import Interactions
from sif.options import SIFOptions
from sif.engine import batches


def _reference_batches(data: Interactions, batch_size: int, seed: int, i: int, shuffle: bool = True) -> list:
    """The batches as built before one permuted copy per pass: three gathers per batch."""
    n = len(data)
    if shuffle:
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    return [(data.users[idx], data.items[idx], data.ratings[idx])
            for idx in (order[j : j + batch_size] for j in range(0, n, batch_size))]


def test_batches_sliced_from_one_permuted_copy_are_the_same_batches():
    g = torch.Generator().manual_seed(3)
    data = Interactions(torch.randint(0, 50, (1037,), generator=g), torch.randint(0, 40, (1037,), generator=g),
                        torch.rand(1037, generator=g) * 4 + 1)
    for shuffle in (True, False):
        make = batches(data, 100, seed=7, shuffle=shuffle)
        for i in (0, 1, 5):
            got, want = make(i), _reference_batches(data, 100, 7, i, shuffle)
            assert len(got) == len(want) == 11
            for a, b in zip(got, want):
                for x, y in zip(a, b):
                    assert x.dtype == y.dtype and torch.equal(x, y)


import pytest

from nasp.strategies import build_strategy


def _net(monkeypatch, sparse: bool):
    import sif.model as model
    from sif.model import ModelConfig, SIFNetwork

    monkeypatch.setattr(model, "SPARSE_GRAD_MIN_ROWS", 2048 if sparse else 10 ** 9)
    torch.manual_seed(0)
    net = SIFNetwork(ModelConfig(2100, 2050, dim=4, implicit=True)).double()
    g = torch.Generator().manual_seed(1)
    net.set_history(torch.randint(0, 2100, (5000,), generator=g), torch.randint(0, 2050, (5000,), generator=g))
    with torch.no_grad():
        net.user_history.factors.weight.normal_(std=0.1, generator=g)
    return net


@pytest.mark.parametrize("strategy", ["nasp", "darts", "darts2", "gdas", "random", "fixed"])
def test_sparse_embedding_gradients_take_the_dense_steps(monkeypatch, strategy):
    """Tables from SPARSE_GRAD_MIN_ROWS rows on have sparse gradients; every strategy's steps
    (clip, Adagrad, DARTS' unrolled step) move the weights as with dense gradients."""
    from sif.engine import make_problem

    nets = []
    for sparse in (True, False):
        net = _net(monkeypatch, sparse)
        assert net.user_emb.sparse == net.item_emb.sparse == net.user_bias.sparse == sparse
        assert not net.user_history.factors.sparse
        problem = make_problem(net, dataclasses.replace(SIFOptions().train_settings(), lr=0.05, grad_clip=0.5), {"seed": 0, "candidates": 2} if strategy == "random" else {})
        strat = build_strategy(strategy, problem, 3)
        strat.begin_epoch(0)
        g = torch.Generator().manual_seed(2)
        for _ in range(3):
            batch = lambda: (torch.randint(0, 2100, (64,), generator=g), torch.randint(0, 2050, (64,), generator=g),
                             1 + 4 * torch.rand(64, generator=g, dtype=torch.float64))
            strat.step(batch(), batch())
        nets.append(net)
    for (name, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), name
    assert not torch.equal(nets[0].user_emb.weight, _net(monkeypatch, True).user_emb.weight)  # the steps moved them


def test_forward_and_regularization_equal_the_two_calls():
    from sif.model import ModelConfig, SIFNetwork

    torch.manual_seed(0)
    for implicit in (False, True):
        net = SIFNetwork(ModelConfig(30, 20, dim=4, implicit=implicit)).double()
        net.set_history(torch.randint(0, 30, (100,)), torch.randint(0, 20, (100,)))
        with torch.no_grad():
            for p in net.parameters():
                p.normal_()
        users, items = torch.randint(0, 30, (16,)), torch.randint(0, 20, (16,))
        pred, reg = net.forward_and_regularization(users, items)
        assert torch.allclose(pred, net(users, items), rtol=1e-12) and torch.allclose(reg, net.regularization(users, items), rtol=1e-12)


def test_forward_and_regularization_of_the_joint_space_are_its_own():
    """A subclass that embeds and regularises otherwise (``JointNetwork``) gets its own two calls."""
    from sif.joint import JointConfig, JointNetwork
    from sif.model import ModelConfig

    torch.manual_seed(0)
    net = JointNetwork(JointConfig.search_space(ModelConfig(6, 9, dim=5, global_mean=3.5), "paper")).double()
    net.set_history(torch.tensor([0, 1, 2, 3]), torch.tensor([1, 0, 8, 6]))
    with torch.no_grad():
        for w in net.parameters():
            w.normal_()
    users, items = torch.tensor([0, 1, 4, 3]), torch.tensor([1, 2, 7, 6])
    pred, reg = net.forward_and_regularization(users, items)
    assert torch.allclose(pred, net(users, items)) and torch.allclose(reg, net.regularization(users, items))


def test_train_ratings_per_second_counts_the_timed_training_epochs():
    from sif.pipeline import train_ratings_per_second

    rows = [{"train_seconds": 2.0, "seconds": 3.0}, {"train_seconds": 3.0, "seconds": 4.0}, {"seconds": 1.0}]
    assert train_ratings_per_second(rows, 1000) == 400.0  # 2 timed epochs of 1,000 ratings in 5 s
    assert train_ratings_per_second([{"seconds": 1.0}], 1000) is None


def test_tables_take_dense_gradients_off_the_cpu(monkeypatch):
    """On a GPU a sparse gradient's coalescing makes the host wait at every step: there every
    table is dense (the same update, tested above); the CPU keeps sparse gradients for large tables."""
    from sif import pipeline
    from sif.data import IdMap, Splits

    g = torch.Generator().manual_seed(0)
    data = Interactions(torch.randint(0, 2100, (5000,), generator=g), torch.randint(0, 2050, (5000,), generator=g),
                        torch.ones(5000))
    splits = Splits(data, data, data, IdMap([str(u) for u in range(2100)], [str(i) for i in range(2050)]), (1.0, 5.0))
    from sif.model import ModelConfig

    config = ModelConfig(2100, 2050, dim=4, implicit=True)
    on_cpu = pipeline.build_network(splits, config, torch.device("cpu"))
    assert on_cpu.user_emb.sparse and on_cpu.item_emb.sparse and on_cpu.user_bias.sparse
    off_cpu = pipeline.build_network(splits, config, torch.device("meta"))  # any device but the CPU
    assert not any(m.sparse for m in off_cpu.modules() if isinstance(m, torch.nn.Embedding))
