"""Exact negative sampling (never a positive, uniform over the non-positives) and the BPR / BCE
losses on scores."""
import math

import pytest
import torch
import torch.nn.functional as F

from nasp.errors import NaspError
from sif.ranking import LOSSES, NegativeSampler, bce_loss, bpr_loss


def _dense_positives(users: int, items: int, density: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(users, items, generator=g) < density


def test_samples_are_never_positive_even_for_dense_users():
    positive = _dense_positives(60, 40, 0.9, 0)
    positive[:, 17] = False  # every user keeps at least one negative
    positive[3] = True
    positive[3, 8] = False  # user 3: all but item 8
    users, items = torch.nonzero(positive, as_tuple=True)
    sampler = NegativeSampler(users, items, 40)
    g = torch.Generator().manual_seed(1)
    drawn = sampler.sample(torch.arange(60).repeat(3), 500, generator=g)
    assert drawn.shape == (180, 500) and drawn.dtype == torch.long
    assert int(drawn.min()) >= 0 and int(drawn.max()) < 40
    assert not positive[torch.arange(60).repeat(3).unsqueeze(1), drawn].any()
    assert torch.equal(drawn[3], torch.full((500,), 8))
    assert sampler.num_positives(torch.tensor([3])).tolist() == [39]


def test_samples_are_uniform_over_the_non_positives():
    num_items = 50
    positive = _dense_positives(4, num_items, 0.4, 2)
    users, items = torch.nonzero(positive, as_tuple=True)
    sampler = NegativeSampler(users, items, num_items)
    draws = 40_000
    drawn = sampler.sample(torch.arange(5), draws, generator=torch.Generator().manual_seed(3))  # user 4: no positives
    for u in range(5):
        negatives = torch.arange(num_items) if u == 4 else torch.nonzero(~positive[u]).flatten()
        counts = torch.bincount(drawn[u], minlength=num_items).double()
        assert counts[negatives].sum() == draws  # everything drawn is a negative
        expected = draws / len(negatives)
        chi2 = float(((counts[negatives] - expected) ** 2 / expected).sum())
        df = len(negatives) - 1
        assert chi2 < df + 5 * math.sqrt(2 * df), (u, chi2, df)  # about 5 standard deviations of chi2(df)


def test_duplicate_pairs_count_once():
    users, items = torch.tensor([0, 0, 0, 0, 1, 1, 1]), torch.tensor([2, 2, 0, 2, 0, 1, 1])
    sampler = NegativeSampler(users, items, 3)
    assert sampler.num_positives(torch.tensor([0, 1, 2])).tolist() == [2, 2, 0]
    drawn = sampler.sample(torch.tensor([0, 1]), 100, generator=torch.Generator().manual_seed(0))
    assert set(drawn[0].tolist()) == {1} and set(drawn[1].tolist()) == {2}


def test_a_user_with_every_item_positive_is_reported_and_refused():
    users = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2, 2, 2])
    items = torch.tensor([0, 1, 2, 1, 0, 1, 2, 2, 1, 0])  # users 0 and 2 have every item (2 with duplicates)
    sampler = NegativeSampler(users, items, 3)
    assert sampler.users_without_negatives().tolist() == [0, 2]
    drawn = sampler.sample(torch.tensor([1, 1, 3]), 50)  # the others still sample
    assert set(drawn[:2].flatten().tolist()) <= {0, 2} and set(drawn[2].tolist()) <= {0, 1, 2}
    with pytest.raises(NaspError, match="^2 user"):
        sampler.sample(torch.tensor([0, 1, 2, 2, 0]), 4)
    assert NegativeSampler(users[:4], items[:4], 4).users_without_negatives().numel() == 0


def test_sampling_is_reproducible_and_moves_between_devices():
    positive = _dense_positives(10, 30, 0.5, 4)
    sampler = NegativeSampler(*torch.nonzero(positive, as_tuple=True), 30)
    first = sampler.sample(torch.arange(10), 7, generator=torch.Generator().manual_seed(5))
    again = sampler.to("cpu").sample(torch.arange(10), 7, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, again) and sampler.device == torch.device("cpu")
    assert sampler.sample(torch.arange(10), 0).shape == (10, 0)
    assert sampler.sample(torch.zeros(0, dtype=torch.long), 3).shape == (0, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sampling_on_cuda_stays_there_and_never_draws_a_positive():
    positive = _dense_positives(50, 40, 0.8, 6)
    positive[:, 0] = False
    sampler = NegativeSampler(*[t.cuda() for t in torch.nonzero(positive, as_tuple=True)], 40)
    assert sampler.device.type == "cuda"
    drawn = sampler.sample(torch.arange(50, device="cuda"), 300, generator=torch.Generator("cuda").manual_seed(0))
    assert drawn.device.type == "cuda"
    assert not positive[torch.arange(50).unsqueeze(1), drawn.cpu()].any()
    assert sampler.to("cpu").sample(torch.arange(50), 5).device.type == "cpu"


def test_positives_out_of_range_are_refused():
    with pytest.raises(ValueError):
        NegativeSampler(torch.tensor([0]), torch.tensor([3]), 3)
    with pytest.raises(ValueError):
        NegativeSampler(torch.tensor([0, 1]), torch.tensor([1]), 3)


def test_bpr_loss_by_hand_and_stable_for_large_margins():
    pos, neg = torch.tensor([2.0, -1.0]), torch.tensor([[1.0, 0.0, 3.0], [-1.0, 2.0, -4.0]])
    expected = sum(-math.log(1 / (1 + math.exp(-(p - n)))) for p, row in zip(pos.tolist(), neg.tolist()) for n in row) / 6
    assert float(bpr_loss(pos, neg)) == pytest.approx(expected)
    assert float(bpr_loss(pos, neg[:, 0])) == pytest.approx(float(bpr_loss(pos, neg[:, :1])))  # [B] means N = 1
    pos = torch.tensor([-1000.0], requires_grad=True)
    loss = bpr_loss(pos, torch.tensor([[1000.0]]))
    loss.backward()
    assert loss.item() == pytest.approx(2000.0) and pos.grad.item() == pytest.approx(-1.0)


def test_bce_loss_by_hand_is_binary_cross_entropy_over_every_term():
    pos, neg = torch.tensor([2.0, -1.0]), torch.tensor([[1.0, 0.0, 3.0], [-1.0, 2.0, -4.0]])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = (-sum(math.log(sig(p)) for p in pos.tolist()) - sum(math.log(1 - sig(n)) for n in neg.flatten().tolist())) / 8
    assert float(bce_loss(pos, neg)) == pytest.approx(expected)
    logits = torch.cat([pos, neg.flatten()])
    labels = torch.cat([torch.ones(2), torch.zeros(6)])
    assert float(bce_loss(pos, neg)) == pytest.approx(float(F.binary_cross_entropy_with_logits(logits, labels)))
    assert math.isfinite(float(bce_loss(torch.tensor([-1000.0]), torch.tensor([[1000.0]]))))


def test_losses_registry():
    assert LOSSES.get("bpr") is bpr_loss and LOSSES.get("bce") is bce_loss
    assert LOSSES.names() == ["bpr", "bce"]
    with pytest.raises(NaspError, match="unknown ranking loss 'hinge'"):
        LOSSES.get("hinge")
