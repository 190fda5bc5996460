import tarfile
from pathlib import Path

import pytest
import torch

from nasp.cnn.data import write_synthetic_cifar

torch.set_num_threads(1)


def write_cifar(folder: Path, per_batch: int = 16, seed: int = 0, skip: tuple = ()) -> Path:
    """Tiny CIFAR-10 python batches: class k images are bright in channel k % 3 (learnable)."""
    return write_synthetic_cifar(folder, per_batch, seed, skip)


@pytest.fixture
def cifar_dir(tmp_path) -> Path:
    return write_cifar(tmp_path / "cifar-10-batches-py")


@pytest.fixture
def cifar_tar(tmp_path) -> Path:
    folder = write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname="cifar-10-batches-py")
    return archive


@pytest.fixture
def cifar_writer():
    return write_cifar
