import numpy as np
import pytest
import torch

from nasp import NaspError
from nasp.cnn.data import Augment, Batches, load_data, search_split


def test_cifar_folder_nested_folder_and_archive(cifar_dir, cifar_tar):
    a = load_data(str(cifar_dir))
    b = load_data(str(cifar_dir.parent))  # the folder above cifar-10-batches-py
    c = load_data(str(cifar_tar))
    for d in (a, b, c):
        assert len(d.train) == 80 and len(d.test) == 16
        assert d.num_classes == 10 and d.in_channels == 3
        assert d.train.images(torch.arange(3)).dtype == torch.uint8
    assert torch.equal(a.train.images(torch.arange(80)), c.train.images(torch.arange(80)))


def test_incomplete_cifar_names_the_missing_files(tmp_path, cifar_writer):
    folder = cifar_writer(tmp_path / "c", skip=("data_batch_3", "test_batch"))
    with pytest.raises(NaspError, match="missing data_batch_3, test_batch"):
        load_data(str(folder))


def test_corrupt_archive_and_corrupt_batch(tmp_path, cifar_dir):
    bad = tmp_path / "cifar-10-python.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage" * 10)
    with pytest.raises(NaspError, match="corrupt or unreadable archive"):
        load_data(str(bad))
    (cifar_dir / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(NaspError, match="data_batch_2: not a CIFAR-10 python batch"):
        load_data(str(cifar_dir))


def test_unknown_name_and_missing_path():
    with pytest.raises(NaspError, match="no such file or directory, and not a known name"):
        load_data("cifar100-nope")


def test_digits_are_real_images():
    d = load_data("digits")
    assert (len(d.train), len(d.test), d.in_channels, d.image_size) == (1437, 360, 1, (8, 8))
    assert d.flip is False


def test_image_folder(tmp_path):
    from PIL import Image

    for split, n in (("train", 3), ("val", 1)):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (20 + i, 16), (10 * i, 100, 200)).save(folder / f"{i}.png")
    d = load_data(str(tmp_path), image_size=12)
    assert (len(d.train), len(d.test), d.num_classes, d.kind) == (6, 2, 2, "imagenet")
    assert d.train.images(torch.tensor([0, 5])).shape == (2, 3, 12, 12)
    (tmp_path / "val" / "dog" / "0.png").write_bytes(b"broken")
    with pytest.raises(NaspError, match="0.png: not a readable image"):
        d2 = load_data(str(tmp_path), image_size=12)
        d2.test.images(torch.tensor([1]))


def test_search_split_is_a_disjoint_half():
    w, a = search_split(100, 0.5, seed=3)
    assert len(w) == len(a) == 50 and not set(w.tolist()) & set(a.tolist())
    w2, _ = search_split(100, 0.5, seed=3)
    assert torch.equal(w, w2)
    with pytest.raises(NaspError):
        search_split(100, 1.0)


def test_batches_are_deterministic_and_augmented(cifar_dir):
    d = load_data(str(cifar_dir))
    idx = torch.arange(80)
    make = lambda seed: Batches(d.train, idx, 32, torch.device("cpu"), d.mean, d.std, seed=seed,
                                augment=Augment(pad=4, flip=True, cutout=8))
    first = [x for x, _ in make(7)]
    again = [x for x, _ in make(7)]
    assert len(first) == 2 and first[0].shape == (32, 3, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], next(iter(make(8)))[0])
    x = torch.ones(4, 1, 8, 8)
    out = Augment(cutout=4)(x, torch.Generator().manual_seed(0))
    assert (out == 0).any() and (out == 1).any()


def _batch(tmp_path, data, labels):
    """A CIFAR-10 folder whose data_batch_1 holds ``data`` and ``labels`` (the others as written)."""
    import pickle

    from nasp.cnn.data import write_synthetic_cifar

    folder = write_synthetic_cifar(tmp_path / "cifar", per_batch=4)
    with open(folder / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": data, b"labels": labels}, fh)
    return folder


@pytest.mark.parametrize("data, labels, message", [
    ("pixels", [0, 1], r"CIFAR-10 batch has data of shape \(\)"),
    (np.array([["x"] * 3072] * 2), [0, 1], r"pixels are text; expected whole numbers 0..255"),
    (np.zeros((2, 3072), np.uint8), ["cat", "dog"], r"labels are text; expected whole numbers 0..9"),
    (np.zeros((2, 3072), np.uint8), [float("nan"), 1.0], r"labels must be whole numbers 0..9; found nan"),
    (np.zeros((2, 3072), np.uint8), [2.7, 1.0], r"labels must be whole numbers 0..9; found 2.7"),
    (np.zeros((2, 3072), np.uint8), [1, 10], r"labels outside 0..9 \(10 found\)"),
    (np.full((2, 3072), np.nan), [0, 1], r"pixels must be whole numbers 0..255; found nan"),
    (np.full((2, 3072), 1000, np.uint16), [0, 1], r"pixels outside 0..255 \(1000 found\)"),
])
def test_bad_cifar_batches_give_one_clear_error_each(tmp_path, data, labels, message):
    with pytest.raises(NaspError, match=r"data_batch_1: " + message):
        load_data(str(_batch(tmp_path, data, labels)))


def test_whole_float_labels_and_pixels_are_read(tmp_path):
    d = load_data(str(_batch(tmp_path, np.full((2, 3072), 7.0), [3.0, 9.0])))
    assert d.train.images(torch.arange(2)).max() == 7


def test_cifar_batches_larger_than_a_batch_can_be_are_refused(tmp_path, cifar_dir, cifar_tar, monkeypatch):
    monkeypatch.setattr("nasp.cnn.data.MAX_CIFAR_BATCH_BYTES", 1000)
    with pytest.raises(NaspError, match=r"data_batch_1: [\d,]+ bytes, more than the 1,000 this kind of file may have"):
        load_data(str(cifar_dir))
    with pytest.raises(NaspError, match=r"member cifar-10-batches-py/data_batch_1 inflates to [\d,]+ bytes, more than the 1,000"):
        load_data(str(cifar_tar))
