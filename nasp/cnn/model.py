"""Evaluation networks built from a genotype: CIFAR (20 cells, 36 channels) and ImageNet
(14 cells, 48 channels, two-stage stem), both with an optional auxiliary head and drop-path.

``MODELS`` maps ``cifar`` / ``imagenet`` to their builders; ``count_params`` and ``count_flops``
give the reported size (auxiliary head excluded) and multiply-adds of one image.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from ..registry import Registry
from .genotypes import Genotype
from .ops import OPS, FactorizedReduce, Identity, ReLUConvBN, nchw


def drop_path(x: Tensor, drop_prob: float) -> Tensor:
    """Zero whole samples of a branch with probability ``drop_prob`` (scaled to keep the mean)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


class EvalCell(nn.Module):
    """A discrete cell: two ops per node as the genotype says."""

    def __init__(self, genotype: Genotype, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.pre0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, 0)
        edges, concat = genotype.cell(reduction)
        self.inputs = [i for _, i in edges]
        self.ops = nn.ModuleList(OPS.get(op).build(c, 2 if reduction and i < 2 else 1, True) for op, i in edges)
        # drop-path skips only true identities: a stride-2 skip_connect is a FactorizedReduce
        self.identity = [isinstance(op, Identity) for op in self.ops]
        self.concat = list(concat)
        self.multiplier = len(concat)

    def forward(self, s0: Tensor, s1: Tensor, drop_prob: float) -> Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for node in range(len(self.ops) // 2):
            total = None
            for k in (2 * node, 2 * node + 1):
                h = self.ops[k](states[self.inputs[k]])
                if self.training and drop_prob > 0 and not self.identity[k]:
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """Classifier on the features after the 2/3 reduction (any resolution: pooled to 2x2)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AdaptiveAvgPool2d(2),
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


class EvalNetwork(nn.Module):
    """Stem, ``layers`` cells (reductions at 1/3 and 2/3), global pooling, linear classifier.

    ``forward`` returns ``(logits, aux_logits)``; ``aux_logits`` is ``None`` outside training or
    without an auxiliary head. Set ``drop_path_prob`` before each epoch (ramped by the trainer).
    """

    def __init__(self, genotype: Genotype, stem: nn.Module, c_stem: int, channels: int, layers: int, num_classes: int,
                 auxiliary: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.genotype = genotype
        self.stem = stem
        self.drop_path_prob = 0.0
        self.reduction_layers = sorted({layers // 3, 2 * layers // 3})
        self.aux_layer = 2 * layers // 3
        c_pp, c_p, c_curr = c_stem, c_stem, channels
        self.cells = nn.ModuleList()
        self.auxiliary_head: Optional[AuxiliaryHead] = None
        for i in range(layers):
            reduction = i in self.reduction_layers
            if reduction:
                c_curr *= 2
            cell = EvalCell(genotype, c_pp, c_p, c_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c_curr
            if auxiliary and i == self.aux_layer:
                self.auxiliary_head = AuxiliaryHead(c_p, num_classes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def stem_outputs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s = self.stem(x)
        return s, s

    def forward(self, x: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        s0, s1 = self.stem_outputs(nchw(x))
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_layer and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        return self.classifier(self.pool(s1).flatten(1)), aux


class ImageNetStem(nn.Module):
    """Two stages: (3x3 s2 to C/2, BN, ReLU, 3x3 s2 to C, BN) then (ReLU, 3x3 s2, BN): 1/8 resolution."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        half = max(1, channels // 2)
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, half, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            nn.Conv2d(half, channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)


class NetworkImageNet(EvalNetwork):
    def stem_outputs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.stem(x)


ModelBuilder = Callable[..., EvalNetwork]
MODELS: Registry[ModelBuilder] = Registry("model")


@MODELS.register("cifar")
def network_cifar(genotype: Genotype, channels: int = 36, layers: int = 20, num_classes: int = 10, in_channels: int = 3,
                  auxiliary: bool = True) -> EvalNetwork:
    """DARTS' CIFAR network: stem 3x3 conv to 3C + BN."""
    c_stem = 3 * channels
    stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
    return EvalNetwork(genotype, stem, c_stem, channels, layers, num_classes, auxiliary, reduction_prev=False)


@MODELS.register("imagenet")
def network_imagenet(genotype: Genotype, channels: int = 48, layers: int = 14, num_classes: int = 1000,
                     in_channels: int = 3, auxiliary: bool = True) -> EvalNetwork:
    """DARTS' ImageNet network: two-stage stem (1/8 resolution), the first cell sees a reduced input."""
    if channels < 2:
        raise ValueError("the ImageNet network needs at least 2 channels")
    return NetworkImageNet(genotype, ImageNetStem(in_channels, channels), channels, channels, layers, num_classes,
                           auxiliary, reduction_prev=True)


def count_params(model: nn.Module) -> int:
    """Parameters of the network without its auxiliary head (what papers report)."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("auxiliary_head."))


def _aux_head(name: str) -> bool:
    return name.startswith("auxiliary_head")


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: tuple[int, int, int], exclude: Callable[[str], bool] = _aux_head) -> int:
    """Multiply-adds of one ``(C, H, W)`` image through convolutions and linear layers (eval mode),
    counted with forward hooks; modules whose qualified name ``exclude`` accepts are not counted
    (default: the auxiliary head)."""
    total = [0]

    def conv_hook(m: nn.Conv2d, inp: tuple, out: Tensor) -> None:
        kh, kw = m.kernel_size
        total[0] += out.numel() // out.shape[0] * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inp: tuple, out: Tensor) -> None:
        total[0] += m.in_features * m.out_features

    hooks = []
    for name, m in model.named_modules():
        if exclude(name):
            continue
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return int(total[0])
