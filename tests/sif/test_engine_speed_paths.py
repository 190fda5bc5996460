"""The fast paths of SIF's training loop give the same numbers as the plain ones."""
from __future__ import annotations

import torch

from sif.data import Interactions
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
