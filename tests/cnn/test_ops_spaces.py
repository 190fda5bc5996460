import pytest
import torch

from nasp import NaspError
from nasp.cnn.model import MODELS, count_flops, count_params
from nasp.cnn.genotypes import GENOTYPES
from nasp.cnn.ops import OPS, FactorizedReduce
from nasp.cnn.search_net import CNNSearchNetwork
from nasp.cnn.spaces import SPACES, Space, register_space

ALL_OPS = [
    "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7", "dil_conv_3x3", "dil_conv_5x5", "conv_1x1",
    "conv_3x3", "conv_3x1_1x3", "max_pool_3x3", "max_pool_5x5", "max_pool_7x7", "avg_pool_3x3", "avg_pool_5x5",
    "avg_pool_7x7",
]


@pytest.mark.parametrize("name", ALL_OPS)
@pytest.mark.parametrize("size", [8, 7])
def test_every_op_keeps_channels_and_halves_resolution_at_stride_2(name, size):
    assert name in OPS
    x = torch.randn(2, 6, size, size)
    for stride, expected in ((1, size), (2, (size + 1) // 2)):
        op = OPS.get(name).build(6, stride, True)
        assert op(x).shape == (2, 6, expected, expected), (name, stride)


def test_param_counts():
    c = 16
    assert OPS.get("skip_connect").params(c) == 0
    assert OPS.get("max_pool_3x3").params(c) == 0
    assert OPS.get("conv_1x1").params(c) == c * c
    assert OPS.get("conv_3x3").params(c) == 9 * c * c
    assert OPS.get("sep_conv_3x3").params(c) == 2 * (9 * c + c * c)
    assert OPS.get("dil_conv_5x5").params(c) == 25 * c + c * c
    assert OPS.get("conv_3x1_1x3").params(c) == 6 * c * c
    assert OPS.get("conv_3x3").params(c, affine=True) == 9 * c * c + 2 * c
    assert OPS.get("skip_connect").params(c, stride=2) == c * c  # FactorizedReduce: two C x C/2 1x1 convs


def test_factorized_reduce_rejects_odd_channels():
    with pytest.raises(ValueError):
        FactorizedReduce(4, 5)


@pytest.mark.parametrize("space", ["darts", "nasp12"])
def test_each_space_builds_and_runs(space):
    net = CNNSearchNetwork(space, channels=4, layers=3, num_classes=5)
    assert net.alpha_normal.shape == (14, len(SPACES.get(space).normal))
    assert net.alpha_reduce.shape == (14, len(SPACES.get(space).reduce))
    assert ((net.alpha_normal - 0.5).abs() < 0.01).all()
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 5)


def test_space_sizes_and_registry():
    assert len(SPACES.get("darts").normal) == 7
    assert (len(SPACES.get("nasp12").normal), len(SPACES.get("nasp12").reduce)) == (8, 5)
    with pytest.raises(NaspError, match="unknown search space 'nope'"):
        SPACES.get("nope")
    with pytest.raises(NaspError, match="unknown operation"):
        Space("bad", ("conv_9x9",), ("skip_connect",))
    tiny = Space("tiny-test", ("skip_connect", "conv_3x3"), ("max_pool_3x3", "skip_connect"))
    register_space(tiny)
    net = CNNSearchNetwork("tiny-test", channels=2, layers=2)
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_eval_networks_shapes_params_and_flops():
    g = GENOTYPES.get("DARTS_V2")
    assert abs(count_params(MODELS.get("cifar")(g)) - 3.35e6) < 0.05e6  # DARTS reports 3.3M
    net = MODELS.get("cifar")(g, channels=8, layers=5, num_classes=7)
    net.drop_path_prob = 0.2
    logits, aux = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 7) and aux.shape == (2, 7)
    net.eval()
    assert net(torch.randn(2, 3, 32, 32))[1] is None
    assert count_flops(net, (3, 32, 32)) > 0
    imagenet = MODELS.get("imagenet")(g, channels=8, layers=5, num_classes=4)
    logits, aux = imagenet(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 4) and aux.shape == (2, 4)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
def test_cpu_pools_match_torch_kernels(kind, k, stride):
    import torch.nn.functional as F

    x = torch.randn(2, 3, 9, 7, dtype=torch.float64, requires_grad=True)
    op = OPS.get(f"{kind}_pool_{k}x{k}").build(3, stride, False)
    ref = (F.max_pool2d(x, k, stride, k // 2) if kind == "max"
           else F.avg_pool2d(x, k, stride, k // 2, count_include_pad=False))
    out = op(x)
    assert out.shape == ref.shape and torch.allclose(out, ref)
    g = torch.randn_like(ref)
    assert torch.allclose(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0])
