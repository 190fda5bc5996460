"""The budgeted cell projection (``nasp.prox.BudgetedCellProjection``) against brute force over
every cell of small spaces, its rounding guarantee, its error, its sampler and the Architect."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from nasp import Architect, NaspError, prox

EDGES = [2, 3]  # node 0: edges 0-1, node 1: edges 2-4


def cells_of(edges_per_node, ops, k):
    """Every valid cell of one tensor: tuples (row, op) of the kept entries."""
    per_node = []
    for sl in prox.node_slices(edges_per_node):
        options = []
        for rows in itertools.combinations(range(sl.start, sl.stop), min(k, sl.stop - sl.start)):
            for choice in itertools.product(range(ops), repeat=len(rows)):
                options.append(tuple(zip(rows, choice)))
        per_node.append(options)
    return [sum(parts, ()) for parts in itertools.product(*per_node)]


def brute_force(alphas, tables, base, limit, k=2):
    """(best value, its cost) over every joint cell with cost <= limit; None when none fits."""
    scored = []
    for a, t in zip(alphas, tables):
        cells = cells_of(EDGES, a.shape[1], k)
        value = np.array([sum(float(a[r, o]) for r, o in c) for c in cells])
        cost = np.array([sum(float(t[r, o]) for r, o in c) for c in cells])
        scored.append((value, cost))
    (v0, c0), (v1, c1) = scored
    value = v0[:, None] + v1[None, :]
    cost = base + c0[:, None] + c1[None, :]
    feasible = cost <= limit
    if not feasible.any():
        return None
    return float(value[feasible].max())


def kept_value(alphas, discrete):
    return sum(float(a[d > 0].sum()) for a, d in zip(alphas, discrete))


def assert_valid_cell(discrete, k=2):
    for d in discrete:
        assert ((d == 0) | (d == 1)).all() and (d.sum(-1) <= 1).all()
        for sl in prox.node_slices(EDGES):
            assert int(d[sl].sum()) == min(k, sl.stop - sl.start)


def instance(seed, ops=(3, 2), integer=True):
    g = torch.Generator().manual_seed(seed)
    alphas = [torch.rand(sum(EDGES), n, generator=g) for n in ops]
    if integer:
        tables = [torch.randint(0, 50, (sum(EDGES), n), generator=g).double() for n in ops]
    else:
        tables = [torch.rand(sum(EDGES), n, generator=g, dtype=torch.float64) * 3 for n in ops]
    return alphas, tables


@pytest.mark.parametrize("seed", range(12))
def test_exact_optimum_on_integer_costs(seed):
    alphas, tables = instance(seed)
    base = 7.0
    costs = prox.CellCosts(tuple(tables), base)
    cheapest = prox.BudgetedCellProjection(EDGES, costs, 1e9).cheapest
    free = prox.BudgetedCellProjection(EDGES, costs, 1e9)
    unconstrained = costs.cost(free.unconstrained(alphas))
    for limit in np.linspace(cheapest, unconstrained + 5, 6):
        limit = float(np.floor(limit))
        if limit < cheapest:
            continue
        proj = prox.BudgetedCellProjection(EDGES, costs, limit)
        assert proj.describe()["max_rounding_waste"] == 0  # integer costs below the grid: exact
        out = proj(alphas)
        assert_valid_cell(out)
        assert costs.cost(out) <= limit
        assert kept_value(alphas, out) == pytest.approx(brute_force(alphas, tables, base, limit))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("integer", [True, False])
def test_coarse_grid_is_feasible_and_within_its_rounding_margin(seed, integer):
    alphas, tables = instance(100 + seed, integer=integer)
    costs = prox.CellCosts(tuple(tables), 3.0)
    ref = prox.BudgetedCellProjection(EDGES, costs, 1e9)
    top = costs.cost(ref.unconstrained(alphas))
    for fraction in (0.35, 0.6, 0.85):
        limit = ref.cheapest + fraction * (top - ref.cheapest)
        proj = prox.BudgetedCellProjection(EDGES, costs, limit, grid=10)
        out = proj(alphas)
        assert_valid_cell(out)
        assert costs.cost(out) <= limit  # rounding up: every grid-feasible cell truly fits
        waste = proj.describe()["max_rounding_waste"]
        assert waste == pytest.approx(proj.kept_entries * (limit - 3.0) / 10)
        best = brute_force(alphas, tables, 3.0, limit)
        lower = brute_force(alphas, tables, 3.0, limit - waste)
        value = kept_value(alphas, out)
        assert value <= best + 1e-9
        if lower is not None:
            assert value >= lower - 1e-9


def test_a_budget_that_is_not_binding_gives_the_plain_cell_projection():
    alphas, tables = instance(5)
    proj = prox.BudgetedCellProjection(EDGES, prox.CellCosts(tuple(tables)), 1e9)
    out = proj(alphas)
    for a, d in zip(alphas, out):
        assert torch.equal(d, prox.topk_per_node(a, EDGES, 2))
    assert not proj.binding(alphas)


def test_binding_budget_changes_the_cell_and_says_so():
    alphas = [torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.1], [0.6, 0.1], [0.1, 0.2]])]
    tables = [torch.tensor([[10.0, 0.0]] * 5)]
    proj = prox.BudgetedCellProjection(EDGES, prox.CellCosts(tuple(tables)), 20.0)
    out = proj(alphas)
    assert proj.binding(alphas) and proj.cost(out) <= 20
    # two of the four kept entries may be op 0 (cost 10): the best two by value are rows 0 and 1
    assert out[0].argmax(-1)[:2].tolist() == [0, 0] and out[0][2:, 0].sum() == 0


def test_no_cell_fits_names_the_cheapest_cost():
    tables = [torch.full((5, 3), 1000.0), torch.full((5, 2), 2000.0)]
    costs = prox.CellCosts(tuple(tables), 500.0)
    # cheapest: 4 kept entries per tensor: 500 + 4 * 1000 + 4 * 2000 = 12500
    with pytest.raises(NaspError, match=r"--max-params 12K: no cell fits; the cheapest cell of this space costs 12\.5K parameters"):
        prox.BudgetedCellProjection(EDGES, costs, 12_000, label="--max-params", unit="parameters")
    assert prox.BudgetedCellProjection(EDGES, costs, 12_500).cheapest == 12_500


@pytest.mark.parametrize("limit", [0, -3, float("nan"), float("inf")])
def test_a_budget_must_be_positive_and_finite(limit):
    with pytest.raises(NaspError, match="must be a positive number"):
        prox.BudgetedCellProjection(EDGES, prox.CellCosts((torch.ones(5, 2),)), limit)


def test_a_budget_at_the_cheapest_cell_returns_a_cheapest_cell():
    alphas, tables = instance(9, integer=False)
    costs = prox.CellCosts(tuple(tables), 1.0)
    cheapest = prox.BudgetedCellProjection(EDGES, costs, 1e9).cheapest
    proj = prox.BudgetedCellProjection(EDGES, costs, cheapest, grid=7)
    assert proj.cost(proj(alphas)) == pytest.approx(cheapest)


def test_samples_fit_and_are_uniform_over_the_cells_that_fit():
    tables = (torch.tensor([[0.0, 3.0], [1.0, 2.0], [0.0, 4.0], [2.0, 1.0], [3.0, 0.0]]),)
    costs = prox.CellCosts(tables)
    limit = 3.0
    cells = [c for c in cells_of(EDGES, 2, 1) if sum(float(tables[0][r, o]) for r, o in c) <= limit]
    proj = prox.BudgetedCellProjection(EDGES, costs, limit, k=1)
    g = torch.Generator().manual_seed(0)
    counts: dict = {}
    n = 3000
    for _ in range(n):
        (d,) = proj.sample([torch.Size((5, 2))], g)
        assert proj.cost([d]) <= limit
        key = tuple(sorted((int(r), int(o)) for r, o in (d > 0).nonzero().tolist()))
        counts[key] = counts.get(key, 0) + 1
    assert set(counts) == set(cells)
    expected = n / len(cells)
    assert all(abs(c - expected) < 5 * expected ** 0.5 for c in counts.values()), counts


def test_samples_of_a_per_tensor_projection_are_the_old_noise_projections():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    proj = prox.PerTensor([prox.CellProjection(EDGES, 2)] * 2)
    got = proj.sample([torch.Size((5, 3)), torch.Size((5, 2))], g1)
    want = [prox.topk_per_node(torch.rand(5, 3, generator=g2), EDGES, 2), prox.topk_per_node(torch.rand(5, 2, generator=g2), EDGES, 2)]
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_architect_keeps_every_iterate_within_the_budget():
    torch.manual_seed(0)
    tables = (torch.rand(5, 3, dtype=torch.float64) * 10, torch.rand(5, 2, dtype=torch.float64) * 10)
    costs = prox.CellCosts(tables, 2.0)
    span = prox.BudgetedCellProjection(EDGES, costs, 1e9)
    limit = span.cheapest + 0.4 * (span.most_expensive - span.cheapest)
    proj = prox.BudgetedCellProjection(EDGES, costs, limit)
    alphas = [torch.nn.Parameter(torch.rand(5, 3)), torch.nn.Parameter(torch.rand(5, 2))]
    arch = Architect(alphas, lr=0.05, discretize=proj)
    target = [torch.rand(5, 3), torch.rand(5, 2)]
    binding = 0
    for _ in range(30):
        with arch.discrete() as values:
            assert costs.cost(values) <= limit
            assert_valid_cell(values)
            loss = sum(((a - t) ** 2).sum() for a, t in zip(alphas, target))
            arch.backward(loss)
        binding += proj.binding([a.detach() for a in alphas])
        arch.step()
        arch.zero_grad()
    assert binding > 0  # the budget did constrain some iterates
    assert all(c.min() >= -1 for c in arch.chosen())
