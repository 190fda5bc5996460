"""Candidate operations of the CNN cells (REFERENCE §1, "Op shapes") and their registry.

Every op maps ``C`` channels to ``C`` channels at stride 1 or 2. ``OPS.get(name)`` gives an
``OpSpec``: ``spec.build(C, stride, affine)`` makes the module, ``spec.params(C)`` its parameter
count. A new op is one ``register_op`` call.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import Registry


def nchw(x: Tensor) -> Tensor:
    """``x`` with row-major (N, C, H, W) strides, copied only when its strides differ.

    torch calls a tensor with one channel "contiguous" whatever the stride of that channel, so
    ``.contiguous()`` keeps the channels-last strides a permute or a gather leaves on 1-channel
    images (digits), and every convolution after them then runs oneDNN's channels-last kernels.
    The images always enter the network in the standard layout (docs/cnn.md, "Memory layout").
    """
    expected, step = [], 1
    for size in reversed(x.shape):
        expected.append(step)
        step *= size
    if list(x.stride()) == expected[::-1]:
        return x
    return x.clone(memory_format=torch.contiguous_format)


class ReLUConvBN(nn.Sequential):
    """ReLU, k x k convolution, batch norm."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, depthwise k x k (dilated), pointwise 1 x 1, batch norm."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int, affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked depthwise-separable convolutions (the first carries the stride)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )


class Conv1x3Then3x1(nn.Sequential):
    """ReLU, 1 x 3 convolution, 3 x 1 convolution, batch norm (the NASP space's ``conv_3x1_1x3``)."""

    def __init__(self, c: int, stride: int, affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, (1, 3), stride=(1, stride), padding=(0, 1), bias=False),
            nn.Conv2d(c, c, (3, 1), stride=(stride, 1), padding=(1, 0), bias=False),
            nn.BatchNorm2d(c, affine=affine),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset 1 x 1 stride-2 convolutions, concatenated.

    The second path is shifted by one pixel; odd sizes are padded so both paths agree
    (output size ``ceil(H / 2)``, like the stride-2 convolutions and pools).
    """

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out < 2 or c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_a = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_b = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_a(x), self.conv_b(shifted)], dim=1))


class Pool(nn.Module):
    """Max or average pooling (k x k, 'same' padding; averages ignore the padding).

    On CPU it is computed separably from shifted views (k - 1 elementwise max/add per axis), which
    gives the same values as ``max_pool2d``/``avg_pool2d`` but avoids their slow NCHW CPU
    kernels (10-40x slower than a depthwise convolution of the same size in torch 2.x). On other
    devices the native kernels run.
    """

    def __init__(self, kind: str, kernel: int, stride: int) -> None:
        super().__init__()
        self.kind, self.kernel, self.stride = kind, kernel, stride
        pad = kernel // 2
        self.pool = (
            nn.MaxPool2d(kernel, stride=stride, padding=pad)
            if kind == "max"
            else nn.AvgPool2d(kernel, stride=stride, padding=pad, count_include_pad=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu":
            return self.pool(x)
        out = _separable_max(x, self.kernel) if self.kind == "max" else _separable_mean(x, self.kernel)
        return out[:, :, :: self.stride, :: self.stride] if self.stride > 1 else out


def _window_reduce(x: Tensor, k: int, dim: int, fill: float, combine: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    p, n = k // 2, x.shape[dim]
    pad = (p, p, 0, 0) if dim == 3 else (0, 0, p, p)
    xp = F.pad(x, pad, value=fill)
    out = xp.narrow(dim, 0, n)
    for i in range(1, k):
        out = combine(out, xp.narrow(dim, i, n))
    return out


def _separable_max(x: Tensor, k: int) -> Tensor:
    return _window_reduce(_window_reduce(x, k, 3, float("-inf"), torch.maximum), k, 2, float("-inf"), torch.maximum)


def _valid_count(n: int, k: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    pos = torch.arange(n, device=device)
    p = k // 2
    return ((pos + p).clamp(max=n - 1) - (pos - p).clamp(min=0) + 1).to(dtype)


def _separable_mean(x: Tensor, k: int) -> Tensor:
    total = _window_reduce(_window_reduce(x, k, 3, 0.0, torch.add), k, 2, 0.0, torch.add)
    h, w = x.shape[2], x.shape[3]
    count = _valid_count(h, k, x.device, x.dtype)[:, None] * _valid_count(w, k, x.device, x.dtype)[None, :]
    return total / count


Builder = Callable[[int, int, bool], nn.Module]


@dataclass(frozen=True)
class OpSpec:
    """A candidate operation: its name, how to build it, and whether it is a parameter-free pool."""

    name: str
    build: Builder
    is_pool: bool = False
    is_identity: bool = False

    def params(self, channels: int, stride: int = 1, affine: bool = False) -> int:
        """Parameter count at width ``channels`` (the search network uses ``affine=False``)."""
        return _count_params(self.name, channels, stride, affine)


OPS: Registry[OpSpec] = Registry("operation")


def register_op(name: str, build: Builder, *, is_pool: bool = False, is_identity: bool = False) -> OpSpec:
    """Add an operation to ``OPS``."""
    spec = OpSpec(name, build, is_pool, is_identity)
    OPS.register(name)(spec)
    return spec


@functools.lru_cache(maxsize=None)
def _count_params(name: str, channels: int, stride: int, affine: bool) -> int:
    module = OPS.get(name).build(channels, stride, affine)
    return sum(p.numel() for p in module.parameters())


class Identity(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


def _skip(c: int, stride: int, affine: bool) -> nn.Module:
    return Identity() if stride == 1 else FactorizedReduce(c, c, affine)


register_op("skip_connect", _skip, is_identity=True)
for _k in (3, 5, 7):
    register_op(f"sep_conv_{_k}x{_k}", lambda c, s, a, k=_k: SepConv(c, c, k, s, k // 2, a))
for _k in (3, 5):
    register_op(f"dil_conv_{_k}x{_k}", lambda c, s, a, k=_k: DilConv(c, c, k, s, k - 1, 2, a))
register_op("conv_1x1", lambda c, s, a: ReLUConvBN(c, c, 1, s, 0, a))
register_op("conv_3x3", lambda c, s, a: ReLUConvBN(c, c, 3, s, 1, a))
register_op("conv_3x1_1x3", lambda c, s, a: Conv1x3Then3x1(c, s, a))
for _kind in ("max", "avg"):
    for _k in (3, 5, 7):
        register_op(f"{_kind}_pool_{_k}x{_k}", lambda c, s, a, kind=_kind, k=_k: Pool(kind, k, s), is_pool=True)

#: Spellings found in published genotype files, mapped to the registered names.
ALIASES: dict[str, str] = {
    "conv 1x1": "conv_1x1",
    "conv 3x3": "conv_3x3",
    "sep_3x3": "sep_conv_3x3",
    "sep_5x5": "sep_conv_5x5",
    "sep_7x7": "sep_conv_7x7",
}


def canonical_op(name: str) -> str:
    """The registered name of ``name`` (resolving published aliases); unknown names stay as they are."""
    return ALIASES.get(name, name)
