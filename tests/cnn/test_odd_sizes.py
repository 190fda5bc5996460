"""Odd and tiny widths and image sizes never crash the process (issue 10 §3: glibc heap-corruption
aborts were reported for ``--channels 3`` / ``--channels 1`` on digits), and the images enter the
networks in the standard NCHW layout (1-channel batches used to carry channels-last strides, which
sent every convolution down oneDNN's channels-last kernels; docs/cnn.md, "Memory layout").

The stress work runs in a subprocess, so a native abort (SIGABRT, SIGSEGV) fails the test instead
of killing pytest. ``python tests/cnn/test_odd_sizes.py [repeats]`` runs the worker directly.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
STRATEGIES = ("nasp", "no-auto", "darts", "darts2", "random")
#: (channels, layers, image side): odd, tiny and 1-pixel widths and sizes
SHAPES = ((1, 1, 1), (1, 2, 3), (3, 3, 5), (5, 2, 7), (3, 1, 8))


def _images(batch: int, side: int) -> torch.Tensor:
    """1-channel images with the channels-last strides a gather + permute gives (as digits had)."""
    return torch.randn(batch, side, side, 1).permute(0, 3, 1, 2)


def _search_steps(strategy_name: str, channels: int, layers: int, side: int, steps: int = 1) -> None:
    from nasp.cnn.search_net import CNNSearchNetwork
    from nasp.strategies import SearchProblem, build_strategy

    net = CNNSearchNetwork("darts", channels=channels, layers=layers, num_classes=3, in_channels=1, steps=2, multiplier=2)
    problem = SearchProblem(
        network=net, loss=lambda n, b: F.cross_entropy(n(b[0]), b[1]),
        weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9, weight_decay=3e-4),
        metric="valid_acc", higher_is_better=True, grad_clip=5.0, arch_lr=3e-3,
        options={"candidates": 2, "seed": 0, "warmup_epochs": 0, "unrolled": "darts"})
    strategy = build_strategy(strategy_name, problem, epochs=1)
    strategy.begin_epoch(0)
    for _ in range(steps):
        batch = (_images(4, side), torch.randint(0, 3, (4,)))
        strategy.step(batch, (torch.randn(4, 1, side, side), torch.randint(0, 3, (4,))))
    with strategy.evaluation():
        net(_images(3, side))
    strategy.end_epoch(0, {"valid_acc": 0.5})
    strategy.export()


def _train_steps(channels: int, layers: int, side: int) -> None:
    from nasp.cnn.genotypes import GENOTYPES
    from nasp.cnn.model import MODELS

    for name in ("DARTS_V2", "NASP"):
        model = MODELS.get("cifar")(GENOTYPES.get(name), channels=channels, layers=max(layers, 3), num_classes=3,
                                    in_channels=1, auxiliary=True)
        model.drop_path_prob = 0.2
        logits, aux = model(_images(4, side))
        (logits.sum() + aux.sum()).backward()


def main(repeats: int) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    for _ in range(repeats):
        for channels, layers, side in SHAPES:
            for name in STRATEGIES:
                _search_steps(name, channels, layers, side)
            _train_steps(channels, layers, side)
    print("ok")


def _nchw_ordered(t: torch.Tensor) -> bool:
    """Strides decrease from N to W over the dimensions longer than 1 (views such as the shifted
    path of FactorizedReduce count; channels-last strides do not)."""
    strides = [t.stride(d) for d in range(t.dim()) if t.shape[d] > 1]
    return all(a > b for a, b in zip(strides, strides[1:]))


def _conv_inputs_are_nchw(model: torch.nn.Module, x: torch.Tensor) -> bool:
    seen = []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda mod, inp, out: seen.append(_nchw_ordered(inp[0])))
    model(x)
    return bool(seen) and all(seen)


def test_networks_run_nchw_on_channels_last_strided_images():
    from nasp.cnn.genotypes import GENOTYPES
    from nasp.cnn.model import MODELS
    from nasp.cnn.search_net import CNNSearchNetwork

    x = _images(4, 8)
    assert x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)  # ambiguous on purpose
    assert _conv_inputs_are_nchw(CNNSearchNetwork(channels=3, layers=3, num_classes=3, in_channels=1), x)
    assert _conv_inputs_are_nchw(MODELS.get("cifar")(GENOTYPES.get("DARTS_V2"), channels=3, layers=3, num_classes=3,
                                                     in_channels=1), x)


def test_digits_batches_have_nchw_strides():
    from nasp.cnn.data import Augment, Batches, TensorImages

    images = TensorImages(torch.randint(0, 255, (16, 8, 8, 1), dtype=torch.uint8).permute(0, 3, 1, 2), torch.zeros(16))
    for augment in (None, Augment(pad=1, flip=True, cutout=2)):
        x, _ = next(iter(Batches(images, torch.arange(16), 8, torch.device("cpu"), (0.5,), (0.2,), augment=augment)))
        assert x.stride() == (64, 64, 8, 1)


def test_odd_and_tiny_sizes_never_abort():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "MALLOC_CHECK_": "3", "MALLOC_PERTURB_": "165"}
    result = subprocess.run([sys.executable, __file__, "1"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", (result.returncode, result.stderr[-3000:])


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
