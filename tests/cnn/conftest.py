import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_cifar(folder: Path, per_batch: int = 16, seed: int = 0, skip: tuple = ()) -> Path:
    """Tiny CIFAR-10 python batches: class k images are bright in channel k % 3 (learnable)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in CIFAR_FILES:
        if name in skip:
            continue
        labels = rng.integers(0, 10, per_batch)
        data = rng.integers(0, 60, (per_batch, 3, 32, 32)).astype(np.uint8)
        for i, k in enumerate(labels):
            data[i, k % 3] += np.uint8(20 * (k + 1))
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": data.reshape(per_batch, -1), b"labels": labels.tolist()}, fh)
    return folder


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
