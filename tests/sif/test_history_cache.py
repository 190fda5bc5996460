"""HistoryEncoder's cached sums: exact values, the exact gradient summed over the steps between
two refreshes, nothing lost, the exact path without gradients or with ``refreshes=None``."""
from __future__ import annotations

import torch

from sif.model import HistoryEncoder, ModelConfig, SIFNetwork

HISTORY = (torch.tensor([0, 0, 1, 2, 2, 2, 3, 5, 5]), torch.tensor([1, 4, 0, 2, 3, 6, 6, 5, 1]))  # row 4 has none


def _pair(refreshes):
    torch.manual_seed(0)
    exact, cached = HistoryEncoder(6, 7, 3, None).double(), HistoryEncoder(6, 7, 3, refreshes).double()
    for enc in (exact, cached):
        enc.set_history(*HISTORY)
    with torch.no_grad():
        exact.factors.weight.normal_()
        cached.factors.weight.copy_(exact.factors.weight)
    return exact, cached


def _loss(enc, ids, others, w):
    return (enc(ids) * w).sum() + 0.3 * enc.regularization(others)


def test_values_equal_the_exact_path():
    exact, cached = _pair(64)
    ids = torch.tensor([2, 4, 0, 2, 5])
    assert torch.allclose(cached(ids), exact(ids), rtol=1e-12)
    with torch.no_grad():
        exact.factors.weight.add_(1.0)
        cached.factors.weight.add_(1.0)  # an in-place change (as an optimizer step): the sums follow
    assert torch.allclose(cached(ids), exact(ids), rtol=1e-12)


def test_a_refresh_at_every_lookup_gives_the_exact_gradient():
    exact, cached = _pair(10 ** 6)  # period: one looked-up row
    g = torch.Generator().manual_seed(1)
    ids, others, w = torch.tensor([2, 4, 0, 2, 5]), torch.tensor([1, 6, 6]), torch.randn(5, 3, generator=g, dtype=torch.float64)
    want, = torch.autograd.grad(_loss(exact, ids, others, w), [exact.factors.weight])
    got, = torch.autograd.grad(_loss(cached, ids, others, w), [cached.factors.weight], allow_unused=True)
    # the L2 term's gradient of this step waits for the next refresh when its backward runs after it
    later, = torch.autograd.grad(_loss(cached, ids[:1], others[:0], w[:1] * 0), [cached.factors.weight])
    assert torch.allclose(got + later, want, rtol=1e-10)


def test_the_gradient_between_two_refreshes_is_handed_over_whole():
    exact, cached = _pair(1)  # period: len(history) = 9 looked-up rows
    g = torch.Generator().manual_seed(2)
    total, got = torch.zeros_like(exact.factors.weight), []
    for _ in range(4):  # 3 rows a step: a refresh at the 3rd step, then one pending
        ids, others = torch.randint(0, 6, (3,), generator=g), torch.randint(0, 7, (2,), generator=g)
        w = torch.randn(3, 3, generator=g, dtype=torch.float64)
        total += torch.autograd.grad(_loss(exact, ids, others, w), [exact.factors.weight])[0]
        got.append(torch.autograd.grad(_loss(cached, ids, others, w), [cached.factors.weight], allow_unused=True)[0])
    assert got[0] is None and got[1] is None and got[2] is not None and got[3] is None
    pending = cached.pending_factors.clone()
    step4 = cached.pending_rows.clone()
    assert step4.abs().sum() > 0
    # what was handed over plus what is pending equals the exact gradients of the four steps
    counts = cached.indptr[1:] - cached.indptr[:-1]
    scale = counts.clamp_min(1).double().rsqrt().unsqueeze(1)
    rest = torch.zeros_like(total).index_add_(0, cached.neighbours, torch.repeat_interleave(step4 * scale, counts, dim=0))
    assert torch.allclose(got[2] + pending + rest, total, rtol=1e-10)


def test_without_refreshes_the_exact_path_runs_with_gradients():
    exact, _ = _pair(64)
    ids = torch.tensor([0, 3])
    assert exact(ids).grad_fn is not None and "Cached" not in type(exact(ids).grad_fn).__name__


def test_evaluation_reads_every_rows_sums_once_a_chunk_gathers_much_of_the_history():
    """Without gradients, a chunk whose histories hold at least 1/CACHE_FOR_EVALUATION of the
    history builds every row's sums, and later chunks read them while the factors stand still; a
    small chunk (a few users' recommendations) gathers its own rows' histories only. The values are
    the gathered path's either way, with or without refreshes."""
    for refreshes in (64, None):
        exact, enc = _pair(refreshes)
        small, large, later = torch.tensor([1]), torch.tensor([2, 0, 2, 5]), torch.tensor([1, 3, 4])  # 1, 7, 2 of 9 entries
        want = {k: exact(ids).detach() for k, ids in (("small", small), ("large", large), ("later", later))}  # gathered
        with torch.no_grad():
            assert torch.allclose(enc(small), want["small"], rtol=1e-12)
            assert enc.sums.numel() == 0  # gathered alone
            assert torch.allclose(enc(large), want["large"], rtol=1e-12)
            built = enc.sums
            assert built.shape == (6, 3)
            assert torch.allclose(enc(later), want["later"], rtol=1e-12) and enc.sums is built  # read, not rebuilt
            enc.factors.weight.add_(0.5)  # the factors moved: the sums are stale, a small chunk gathers again
            exact.factors.weight.add_(0.5)
        moved = exact(small).detach()
        with torch.no_grad():
            assert torch.allclose(enc(small), moved, rtol=1e-12) and enc.sums is built


def test_frozen_factors_under_gradients_read_the_cache_and_count_nothing():
    """An architecture step freezes the factors (``differentiating_only``): the encodings are the
    cached sums' rows, with no graph, and nothing is counted toward the next refresh."""
    exact, cached = _pair(64)
    ids = torch.tensor([2, 4, 0, 2, 5])
    cached.factors.weight.requires_grad_(False)
    out = cached(ids)
    assert out.grad_fn is None and torch.allclose(out, exact(ids), rtol=1e-12)
    assert cached.pending_lookups == 0 and cached.pending_rows.numel() == 0


def test_the_network_config_sets_the_refreshes_and_state_dicts_hold_no_cache():
    net = SIFNetwork(ModelConfig(6, 7, dim=3, implicit=True))
    assert net.user_history.refreshes == 64
    assert SIFNetwork(ModelConfig(6, 7, dim=3, implicit=True, history_refreshes=None)).user_history.refreshes is None
    net.set_history(*HISTORY)
    net(torch.tensor([0, 1]), torch.tensor([2, 3])).sum().backward()
    assert not any(k.endswith(("sums", "pending_rows", "pending_factors")) for k in net.state_dict())
    assert ModelConfig.from_dict({k: v for k, v in net.config.to_dict().items() if k != "history_refreshes"}).history_refreshes == 64


def test_a_history_loaded_in_place_rebuilds_the_cache():
    """load_state_dict copies a new history into the same tensors: the cached sums and the
    transposed history of a refresh follow it (they are keyed on the tensors' versions too)."""
    exact, cached = _pair(10 ** 6)
    other = HistoryEncoder(6, 7, 3, None).double()
    other.set_history(torch.tensor([1, 1, 3, 4, 4, 5, 5, 0, 2]), torch.tensor([0, 2, 3, 5, 6, 1, 4, 2, 3]))  # same size
    ids, w = torch.tensor([1, 4, 0]), torch.ones(3, 3, dtype=torch.float64)
    torch.autograd.grad(_loss(cached, ids, ids[:0], w), [cached.factors.weight])  # builds both caches
    state = {**cached.state_dict(), "indptr": other.indptr, "neighbours": other.neighbours}
    cached.load_state_dict(state)
    exact.load_state_dict(state)
    want, = torch.autograd.grad(_loss(exact, ids, ids[:0], w), [exact.factors.weight])
    got, = torch.autograd.grad(_loss(cached, ids, ids[:0], w), [cached.factors.weight])
    with torch.no_grad():
        assert torch.allclose(cached.cached_sums()[ids], exact(ids), rtol=1e-12)
    assert torch.allclose(got, want, rtol=1e-10)
