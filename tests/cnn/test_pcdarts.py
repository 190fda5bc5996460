"""PC-DARTS (``--strategy pcdarts``, ``--partial-channels K``): partial channel connections,
edge normalisation, the export by softmax(alpha) x softmax(beta), and the refusals."""
import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from nasp.cli import main
from nasp.cnn.genotypes import Genotype
from nasp.cnn.search_net import CNNSearchNetwork, SearchEdge, channel_shuffle, edges_per_node
from nasp.errors import NaspError
from nasp.mixing import Softmax, mix, plan
from nasp.prox import node_slices
from nasp.strategies import SearchProblem, build_strategy

OPS = ("skip_connect", "conv_3x3", "max_pool_3x3")


def _inputs_seen(edge):
    seen = []
    for op in edge.ops:
        op.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    return seen


def test_only_one_kth_of_the_channels_goes_through_the_ops_and_the_rest_is_the_input_shuffled():
    torch.manual_seed(0)
    edge = SearchEdge(OPS, channels=8, stride=1, partial_channels=4)
    assert edge.ops[1][1].weight.shape[:2] == (2, 2)  # the ops are C / K = 2 channels wide
    seen = _inputs_seen(edge)
    x = torch.randn(2, 8, 5, 5)
    p = plan(torch.zeros(1, len(OPS)), Softmax())
    out = edge(x, p, 0)
    assert out.shape == x.shape
    assert len(seen) == len(OPS) and all(torch.equal(s, x[:, :2]) for s in seen)  # every op saw the first 2 channels only
    for g in range(4):  # shuffle of 4 groups of 2: input channel g * 2 + j lands on j * 4 + g
        for j in range(2):
            if g == 0:  # the mixed op's output
                expected = mix([lambda op=op: op(x[:, :2]) for op in edge.ops], p, 0)[:, j]
                assert torch.allclose(out[:, j * 4], expected, atol=1e-6)
            else:  # bypassed: the input itself
                assert torch.equal(out[:, j * 4 + g], x[:, g * 2 + j])


def test_a_stride_two_edge_pools_the_bypassed_channels_to_the_ops_output_size():
    torch.manual_seed(0)
    edge = SearchEdge(OPS, channels=8, stride=2, partial_channels=2)
    x = torch.randn(2, 8, 5, 5)  # odd: the ops give ceil(5 / 2) = 3
    out = edge(x, plan(torch.zeros(1, len(OPS)), Softmax()), 0)
    assert out.shape == (2, 8, 3, 3)
    rest = nn.functional.max_pool2d(x[:, 4:], 2, 2, ceil_mode=True)
    assert torch.equal(out[:, 1::2], rest)  # groups of 4: the bypassed half lands on the odd channels


def test_one_channel_share_is_the_plain_edge():
    torch.manual_seed(0)
    plain = SearchEdge(OPS, channels=4, stride=1)
    x = torch.randn(2, 4, 5, 5)
    p = plan(torch.zeros(1, len(OPS)), Softmax())
    assert torch.equal(plain(x, p, 0), mix(plain.candidates(x), p, 0))
    with pytest.raises(ValueError, match="partial_channels 3"):
        SearchEdge(OPS, channels=4, stride=1, partial_channels=3)


def _net(**kw):
    torch.manual_seed(0)
    return CNNSearchNetwork("darts", channels=4, layers=3, num_classes=4, partial_channels=2, edge_normalization=True, **kw)


def _loss(net, batch):
    return nn.functional.cross_entropy(net(batch[0]), batch[1])


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 4, (4,), generator=g)


def _problem(net):
    return SearchProblem(network=net, loss=_loss, weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1), arch_lr=0.1)


def test_edge_betas_are_softmaxed_per_node_and_learn_in_the_architecture_step_only():
    net = _net(steps=2, multiplier=2)  # 2 nodes: 5 edges per cell
    assert net.arch_extra_parameters() == [net.beta_normal, net.beta_reduce]
    assert not {id(b) for b in net.arch_extra_parameters()} & {id(w) for w in net.weights()}
    for weights in net.edge_weights():
        sums = [float(weights[sl].detach().sum()) for sl in node_slices(edges_per_node(2))]
        assert sums == pytest.approx([1.0] * 2)
    strategy = build_strategy("pcdarts", _problem(net), epochs=1)
    betas = [b.detach().clone() for b in net.arch_extra_parameters()]
    seen = []
    net.beta_normal.register_hook(lambda g: seen.append(g))
    strategy.step(_batch(0), _batch(1))
    assert seen and seen[0].abs().sum() > 0  # the validation loss reaches every edge's beta
    assert all((b.detach() != before).any() for b, before in zip(net.arch_extra_parameters(), betas))
    moved = [b.detach().clone() for b in net.arch_extra_parameters()]
    strategy.weight_step(_batch(2), Softmax())  # the weight step leaves them
    assert all(torch.equal(b.detach(), m) for b, m in zip(net.arch_extra_parameters(), moved))


def test_pcdarts_exports_by_op_weight_times_edge_weight():
    """Node 1 (inputs 0, 1, 2): DARTS' rule keeps inputs 0 and 1 (input 0's op is the most
    confident); edge normalisation weighs input 0's edge down, so PC-DARTS keeps 1 and 2."""
    net = _net()
    strategy = build_strategy("pcdarts", _problem(net), epochs=1)
    with torch.no_grad():
        for alpha, beta in zip(net.arch_parameters(), net.arch_extra_parameters()):
            alpha.zero_()
            alpha[2, 0], alpha[3, 1], alpha[4, 1] = 3.0, 1.0, 1.0
            beta.zero_()
            beta[2] = -4.0
    products = strategy.projected_values(net.arch_parameters())
    for product, alpha, edges in zip(products, net.arch_parameters(), net.edge_weights()):
        assert torch.allclose(product, torch.softmax(alpha.detach(), -1) * edges.detach()[:, None])
    exported = strategy.export()
    assert exported == net.derive_weights(products)
    darts, pc = Genotype.from_json(net.derive()), Genotype.from_json(exported)
    assert len(pc.normal) == 8 and len(pc.reduce) == 8
    assert sorted(src for _, src in darts.normal[2:4]) == [0, 1]
    assert sorted(src for _, src in pc.normal[2:4]) == [1, 2] and sorted(src for _, src in pc.reduce[2:4]) == [1, 2]
    assert [op for op, _ in pc.normal[2:4]] == [net.space.normal[1]] * 2  # the arg-max op of each kept edge


def test_pcdarts_refuses_a_network_without_edge_normalisation():
    with pytest.raises(NaspError, match="needs a search network with edge normalisation"):
        build_strategy("pcdarts", _problem(CNNSearchNetwork("darts", channels=4, layers=3, num_classes=4)), epochs=1)


def _invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def test_a_short_pcdarts_search_exports_a_valid_genotype(cifar_dir, tmp_path):
    out = tmp_path / "run"
    result = _invoke("cnn", "search", "--strategy", "pcdarts", "--data", cifar_dir, "--epochs", 1, "--layers", 1, "--nodes", 2, "--channels", 4,
                     "--batch-size", 8, "--subset", 16, "--device", "cpu", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["strategy"] == "pcdarts" and summary["partial_channels"] == 4 and summary["valid_score_of"] == "supernet"
    g = Genotype.from_json(json.loads((out / "arch.json").read_text()))
    assert len(g.normal) == 4 and len(g.reduce) == 4  # 2 nodes, 2 inputs each
    assert json.loads((out / "config.json").read_text())["options"]["partial_channels"] == 4


@pytest.mark.parametrize("args, message", [
    (["--partial-channels", "0"], "0 is not in the range x>=1"),
    (["--partial-channels", "3"], "--partial-channels 3: must divide --channels 4"),
    (["--strategy", "pcdarts", "--channels", "6"], "--partial-channels 4: must divide --channels 6"),
])
def test_partial_channels_that_cannot_split_the_channels_are_one_line_errors(args, message, cifar_dir, tmp_path):
    out = tmp_path / "run"
    result = _invoke("cnn", "search", "--data", cifar_dir, "--epochs", 1, "--layers", 2, "--channels", 4, "--batch-size", 8,
                     "--device", "cpu", "--out", out, *args)
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ") and message in lines[-1], result.output
    assert not out.exists()


def test_the_rnn_and_sif_searches_refuse_pcdarts_by_name(tmp_path, ratings_writer, corpus_writer):
    ratings, corpus = ratings_writer(tmp_path / "u.data"), corpus_writer(tmp_path / "corpus")
    for command, data in (("sif", ratings), ("rnn", corpus)):
        out = tmp_path / command
        result = _invoke(command, "search", "--data", data, "--strategy", "pcdarts", "--out", out)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert lines[0].startswith(f"Error: --strategy pcdarts cannot run in nasp {command} search: PC-DARTS' partial channel")
        assert "(it runs in: nasp cnn search)" in lines[0] and not out.exists()
