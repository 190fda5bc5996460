"""All-item scoring: every op's ``score_matrix`` and ``SIFNetwork.score_all`` equal ``forward``
on every (user, item) pair; the NeuMF op's shapes and gradients."""
import pytest
import torch

from nasp.mixing import Mixing
from sif.model import ModelConfig, SIFNetwork
from sif.space import INTERACTION_FUNCTIONS, SEARCH_SPACE, InteractionOp, NeuMF


def _pairs(p: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (user, item) pair of the two blocks, row-major: [U * I, k] each."""
    u, k = p.shape
    i = q.shape[0]
    return p.unsqueeze(1).expand(u, i, k).reshape(-1, k), q.unsqueeze(0).expand(u, i, k).reshape(-1, k)


def _op(name: str, dim: int) -> InteractionOp:
    cls = INTERACTION_FUNCTIONS.get(name)
    op = (cls(dim, "box") if cls.uses_head else cls(dim)).double()
    with torch.no_grad():
        for w in op.parameters():
            w.normal_()  # away from the start values, which hide mistakes (e.g. a constant head)
    return op


@pytest.mark.parametrize("name", INTERACTION_FUNCTIONS.names())
@pytest.mark.parametrize("dim", [1, 5, 8])
def test_score_matrix_is_forward_on_every_pair(name, dim):
    torch.manual_seed(0)
    op = _op(name, dim)
    p, q = torch.randn(7, dim, dtype=torch.float64), torch.randn(11, dim, dtype=torch.float64)
    expected = op(*_pairs(p, q)).reshape(7, 11)
    for max_elements in (1, 30, 10 ** 6):  # one item per chunk, a few chunks, a single chunk
        got = op.score_matrix(p, q, max_elements=max_elements)
        assert got.shape == (7, 11)
        assert torch.allclose(got, expected, atol=1e-12), (name, max_elements)
    # the base class's broadcast (what an op without its own score_matrix gets) agrees too
    assert torch.allclose(InteractionOp.score_matrix(op, p, q, max_elements=30), expected, atol=1e-12)


def test_every_registered_op_is_an_interaction_op():
    assert all(issubclass(INTERACTION_FUNCTIONS.get(name), InteractionOp) for name in INTERACTION_FUNCTIONS)


def _network(ops, implicit: bool, biases: bool, elementwise: bool, mlp: str = "paper") -> SIFNetwork:
    torch.manual_seed(1)
    net = SIFNetwork(ModelConfig(6, 9, dim=5, ops=tuple(ops), implicit=implicit, biases=biases,
                                 elementwise=elementwise, mlp=mlp, global_mean=3.5)).double()
    with torch.no_grad():
        for w in (net.user_emb.weight, net.item_emb.weight, net.user_bias.weight, net.item_bias.weight):
            w.normal_()
        for op in net.ops:
            for w in op.parameters():
                w.normal_()
        if implicit:
            net.user_history.factors.weight.normal_()
    if implicit:  # user 4 has no history
        net.set_history(torch.tensor([0, 0, 1, 2, 2, 2, 3, 5]), torch.tensor([1, 4, 0, 2, 3, 8, 8, 6]))
    return net


def _check_score_all(net: SIFNetwork) -> None:
    users, items = torch.tensor([3, 0, 5, 4, 0]), torch.tensor([8, 2, 0, 5])
    uu, ii = users.repeat_interleave(len(items)), items.repeat(len(users))
    expected = net(uu, ii).reshape(len(users), len(items))
    assert torch.allclose(net.score_all(users, items), expected, atol=1e-10)
    every = torch.arange(net.config.num_items)
    expected = net(users.repeat_interleave(len(every)), every.repeat(len(users))).reshape(len(users), -1)
    assert torch.allclose(net.score_all(users), expected, atol=1e-10)


@pytest.mark.parametrize("name", INTERACTION_FUNCTIONS.names())
@pytest.mark.parametrize("implicit,biases,elementwise", [(True, True, True), (False, False, False),
                                                         (True, False, True), (False, True, False)])
def test_score_all_is_forward_for_every_single_op(name, implicit, biases, elementwise):
    _check_score_all(_network([name], implicit, biases, elementwise))


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("elementwise", [True, False])
def test_score_all_is_forward_for_the_softmax_supernet(implicit, biases, elementwise):
    net = _network(SEARCH_SPACE, implicit, biases, elementwise)
    with torch.no_grad():
        net.alpha.normal_()
    with net.using(Mixing.SOFTMAX):
        _check_score_all(net)


@pytest.mark.parametrize("mixing", [Mixing.SINGLE, Mixing.ACTIVE])
def test_score_all_follows_the_discrete_rules(mixing):
    net = _network(SEARCH_SPACE, True, True, True, mlp="residual")
    with torch.no_grad():
        net.alpha.copy_(torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]]))  # min alone
    with net.using(mixing):
        _check_score_all(net)
        with torch.no_grad():
            net.alpha.zero_()  # nothing selected: the biases alone
        _check_score_all(net)


def test_score_all_has_gradients_and_stays_on_the_inputs_device():
    net = _network(["mlp"], True, True, True)
    scores = net.score_all(torch.tensor([0, 1]))
    scores.sum().backward()
    assert net.user_emb.weight.grad is not None and net.ops[0].net[0].weight.grad is not None
    assert scores.device == net.user_emb.weight.device


def test_neumf_splits_the_vectors_into_gmf_and_mlp_halves():
    for dim, gmf, mlp in ((8, 4, 4), (7, 3, 4), (1, 0, 1)):
        op = NeuMF(dim)
        assert (op.gmf_dim, op.tower[0].in_features, op.tower[2].out_features) == (gmf, 2 * mlp, mlp)
        assert op.head.shape == (dim,) and torch.equal(op.head.detach(), torch.ones(dim))
        p, q = torch.randn(6, dim), torch.randn(6, dim)
        assert op(p, q).shape == (6,)
    op = NeuMF(6)
    p, q = torch.randn(4, 6), torch.randn(4, 6)
    expected = (p[:, :3] * q[:, :3]).sum(1) + op.tower(torch.cat([p[:, 3:], q[:, 3:]], 1)).sum(1)  # h = ones
    assert torch.allclose(op(p, q), expected, atol=1e-6)


def test_neumf_gradients_reach_both_halves_and_its_output_vector():
    torch.manual_seed(0)
    op = NeuMF(6)
    p, q = torch.randn(10, 6, requires_grad=True), torch.randn(10, 6, requires_grad=True)
    op(p, q).pow(2).sum().backward()
    assert p.grad[:, :3].abs().sum() > 0 and p.grad[:, 3:].abs().sum() > 0
    assert q.grad[:, :3].abs().sum() > 0 and q.grad[:, 3:].abs().sum() > 0
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in op.parameters())


def test_neumf_is_a_fixed_ifc_outside_the_searched_space():
    assert "neumf" in INTERACTION_FUNCTIONS and "neumf" not in SEARCH_SPACE
    assert SEARCH_SPACE == ("multiply", "plus", "min", "max", "concat")
    net = SIFNetwork(ModelConfig(3, 4, dim=6, ops=("neumf",), head="ball"))
    assert net(torch.tensor([0, 2]), torch.tensor([3, 1])).shape == (2,)
    net.reset_weights()
    assert torch.equal(net.ops[0].head.detach(), torch.ones(6))
