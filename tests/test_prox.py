import pytest
import torch

from nasp import prox


def test_onehot_hand_example():
    a = torch.tensor([[0.1, 0.7, 0.2], [0.9, 0.0, 0.3]])
    assert torch.equal(prox.onehot(a), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))


def test_onehot_sets_one_not_the_value_and_keeps_shape():
    a = torch.tensor([0.2, 0.3, 0.1])
    assert torch.equal(prox.onehot(a), torch.tensor([0.0, 1.0, 0.0]))
    b = torch.rand(2, 3, 4)
    assert prox.onehot(b).shape == b.shape
    assert torch.equal(prox.onehot(b).sum(-1), torch.ones(2, 3))


def test_onehot_ties_go_to_lowest_index():
    a = torch.tensor([[0.5, 0.5, 0.5], [0.1, 0.8, 0.8]])
    assert prox.onehot(a).argmax(-1).tolist() == [0, 1]


def test_onehot_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        prox.onehot(torch.tensor([[0.1, float("nan")]]))


def test_box_clamps():
    a = torch.tensor([-0.5, 0.3, 1.7])
    assert torch.equal(prox.box(a), torch.tensor([0.0, 0.3, 1.0]))
    assert torch.equal(prox.box(a, -1, 0.5), torch.tensor([-0.5, 0.3, 0.5]))


def test_topk_per_node_hand_example():
    # node 0: edges 0,1; node 1: edges 2,3,4 — keep top 1 per node (ranked by row max)
    a = torch.tensor(
        [
            [0.2, 0.6],  # max 0.6
            [0.7, 0.1],  # max 0.7 -> kept for node 0
            [0.3, 0.4],  # max 0.4
            [0.9, 0.2],  # max 0.9 -> kept for node 1
            [0.1, 0.8],  # max 0.8
        ]
    )
    out = prox.topk_per_node(a, [2, 3], k=1)
    expect = torch.tensor([[0, 0], [1, 0], [0, 0], [1, 0], [0, 0]], dtype=torch.float)
    assert torch.equal(out, expect)
    out2 = prox.topk_per_node(a, [2, 3], k=2)
    assert out2.sum(-1).tolist() == [1, 1, 0, 1, 1]
    assert out2[4].tolist() == [0, 1]


def test_topk_per_node_ties_keep_lower_edge_and_small_nodes_keep_all():
    a = torch.full((5, 3), 0.5)
    out = prox.topk_per_node(a, [2, 3], k=2)
    assert out.sum(-1).tolist() == [1, 1, 1, 1, 0]
    assert prox.topk_per_node(torch.rand(1, 3), [1], k=2).sum().item() == 1


def test_topk_per_node_shape_and_nan_errors():
    with pytest.raises(ValueError, match="does not fit"):
        prox.topk_per_node(torch.rand(4, 3), [2, 3])
    bad = torch.rand(5, 3)
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        prox.topk_per_node(bad, [2, 3])


def test_cell_projection_darts_cell_has_two_edges_per_node():
    edges = [2, 3, 4, 5]
    out = prox.CellProjection(edges)(torch.rand(14, 7))
    for sl in prox.node_slices(edges):
        assert out[sl].sum().item() == 2
        assert ((out[sl].sum(-1) == 0) | (out[sl].sum(-1) == 1)).all()


def test_nan_alphas_reach_the_cli_as_one_error_line():
    from nasp.errors import DivergedError, NaspError

    with pytest.raises(DivergedError) as info:
        prox.onehot(torch.tensor([[float("nan"), 1.0]]))
    assert isinstance(info.value, NaspError) and isinstance(info.value, ValueError)
