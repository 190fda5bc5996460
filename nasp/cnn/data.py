"""Image data for the CNN search and retraining.

``--data`` takes a known name (``cifar10``, ``digits``) or a path:

* CIFAR-10 "python version": a folder with ``data_batch_1..5`` and ``test_batch`` (or the folder
  above ``cifar-10-batches-py``), or the ``cifar-10-python.tar.gz`` archive itself;
* an ImageNet-style ``ImageFolder``: ``train/<class>/*.jpg`` and ``val/<class>/*.jpg``;
* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 real images, no download).

Images stay uint8 (in memory, or decoded per batch for image folders) until a batch is moved to
the device, where it is normalised and augmented (random crop with padding, horizontal flip,
cutout) with a generator seeded by (seed, epoch): a resumed run sees the same batches.
"""
from __future__ import annotations

import io
import logging
import math
import os
import pickle
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor

from ..data import KnownDataset, fetch, read_small_file, register_dataset
from ..distributed import World
from ..errors import NaspError
from ..registry import Registry
from .ops import nchw

log = logging.getLogger("nasp")

CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}

register_dataset(
    KnownDataset(
        name="cifar10",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        folder="cifar-10-batches-py",
        files=CIFAR_TRAIN + (CIFAR_TEST,),
        description="CIFAR-10, python pickled batches (170 MB)",
    )
)


# image sets -----------------------------------------------------------------------------------
class ImageSet(Protocol):
    """Labelled images addressable by index; ``images(idx)`` returns uint8 (B, C, H, W)."""

    labels: Tensor

    def __len__(self) -> int: ...

    def images(self, index: Tensor) -> Tensor: ...


class TensorImages:
    """Images held in memory as one uint8 tensor."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.data = nchw(images)
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def images(self, index: Tensor) -> Tensor:
        return self.data[index.to(self.data.device)]

    def on(self, device: torch.device) -> "TensorImages":
        """This set with its images and labels on ``device`` (copied once, then cached)."""
        if self.data.device == device:
            return self
        cache = self.__dict__.setdefault("_on", {})
        if str(device) not in cache:
            cache[str(device)] = TensorImages(self.data.to(device), self.labels.to(device))
        return cache[str(device)]


class FolderImages:
    """Image files decoded with PIL per batch, resized (shorter side) and centre-cropped to ``size``."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], size: int) -> None:
        self.paths = list(paths)
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def _decode(self, path: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                w, h = img.size
                scale = self.size / min(w, h)
                img = img.resize((max(self.size, round(w * scale)), max(self.size, round(h * scale))), Image.BILINEAR)
                w, h = img.size
                left, top = (w - self.size) // 2, (h - self.size) // 2
                img = img.crop((left, top, left + self.size, top + self.size))
                return np.asarray(img, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as exc:
            raise NaspError(f"{path}: not a readable image ({exc.__class__.__name__})") from None

    def images(self, index: Tensor) -> Tensor:
        arrays = [self._decode(self.paths[int(i)]) for i in index]
        return nchw(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))


@dataclass
class ImageData:
    """A training set and a test set plus what the networks and augmentation need to know."""

    name: str
    train: ImageSet
    test: ImageSet
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool = True
    crop_pad: int = 4
    classes: list[str] = field(default_factory=list)
    kind: str = "cifar"  # the default evaluation network (a key of model.MODELS)


# CIFAR-10 -------------------------------------------------------------------------------------
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR batch holds: dicts, lists, strings and numpy arrays."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: D401
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        obj = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # any malformed pickle
        raise NaspError(f"{source}: not a CIFAR-10 python batch ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise NaspError(f"{source}: not a CIFAR-10 python batch (expected a dict)")
    get = lambda key: obj.get(key.encode(), obj.get(key))  # noqa: E731  (python 2 pickles have bytes keys)
    data, labels = get("data"), get("labels")
    if data is None or labels is None:
        raise NaspError(f"{source}: CIFAR-10 batch without 'data' and 'labels'")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.ndim != 2 or data.shape[1] != 3072 or labels.ndim != 1 or len(labels) != data.shape[0]:
        raise NaspError(f"{source}: CIFAR-10 batch has data of shape {data.shape} and labels of shape {labels.shape}; "
                        "expected N x 3072 and N")
    labels = _whole_numbers(labels, "labels", 0, 9, source)
    data = _whole_numbers(data, "pixels", 0, 255, source)
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels.astype(np.int64)


#: what a CIFAR batch's labels or pixels may not be, by numpy dtype kind
_NOT_NUMBERS = {"U": "text", "S": "bytes", "O": "Python objects", "b": "booleans", "c": "complex numbers",
                "M": "dates", "m": "time spans", "V": "raw records"}


def _whole_numbers(values: np.ndarray, what: str, low: int, high: int, source: str) -> np.ndarray:
    """``values`` if they are whole numbers in ``low..high`` (integers, or floats that are
    whole), else a ``NaspError`` naming the first that is not: nothing is cast silently."""
    if values.dtype.kind not in "iuf":
        raise NaspError(f"{source}: {what} are {_NOT_NUMBERS.get(values.dtype.kind, values.dtype)}; "
                        f"expected whole numbers {low}..{high}")
    flat = values.reshape(-1)
    if values.dtype.kind == "f":
        fractional = ~np.isfinite(flat) | (flat != np.round(flat))
        if fractional.any():
            raise NaspError(f"{source}: {what} must be whole numbers {low}..{high}; found {flat[np.argmax(fractional)]:g}")
    outside = (flat < low) | (flat > high)
    if outside.any():
        raise NaspError(f"{source}: {what} outside {low}..{high} ({flat[np.argmax(outside)]:g} found)")
    return values


#: the most bytes a CIFAR-10 python batch may have: a real one holds 10,000 images in 31 MB
MAX_CIFAR_BATCH_BYTES = 1 << 27


def _cifar_from_reader(read: Callable[[str], Optional[bytes]], where: str) -> ImageData:
    names = CIFAR_TRAIN + (CIFAR_TEST,)
    raw = {name: read(name) for name in names}
    missing = [n for n in names if raw[n] is None]
    if missing:
        raise NaspError(f"{where}: incomplete CIFAR-10, missing {', '.join(missing)}")
    parts = {n: _read_cifar_batch(raw[n], f"{where}/{n}") for n in names}
    train_x = np.concatenate([parts[n][0] for n in CIFAR_TRAIN])
    train_y = np.concatenate([parts[n][1] for n in CIFAR_TRAIN])
    test_x, test_y = parts[CIFAR_TEST]
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    return ImageData(
        "cifar10", TensorImages(torch.from_numpy(train_x), torch.from_numpy(train_y)),
        TensorImages(torch.from_numpy(test_x), torch.from_numpy(test_y)), 10, 3, (32, 32), CIFAR_MEAN, CIFAR_STD,
        flip=True, crop_pad=4, classes=classes, kind="cifar",
    )


def write_synthetic_cifar(folder: Path, per_batch: int = 16, seed: int = 0, skip: Sequence[str] = (),
                          noise: int = 60, signal: int = 20) -> Path:
    """Write CIFAR-10 python batches of learnable synthetic images (for tests and GPU smoke runs):
    pixels uniform in [0, noise), plus ``signal * (k + 1)`` in channel ``k % 3`` for class k."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in CIFAR_TRAIN + (CIFAR_TEST,):
        if name in skip:
            continue
        labels = rng.integers(0, 10, per_batch)
        data = rng.integers(0, noise, (per_batch, 3, 32, 32)).astype(np.uint8)
        for i, k in enumerate(labels):
            data[i, k % 3] += np.uint8(signal * (k + 1))
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": data.reshape(per_batch, -1), b"labels": labels.tolist()}, fh)
    return folder


def _cifar_dir(path: Path) -> Path:
    nested = path / "cifar-10-batches-py"
    return nested if nested.is_dir() and not (path / CIFAR_TEST).exists() else path


def read_cifar_folder(path: Path) -> ImageData:
    """CIFAR-10 from a folder of python batches (``data_batch_1..5``, ``test_batch``)."""
    folder = _cifar_dir(Path(path))

    def read(name: str) -> Optional[bytes]:
        f = folder / name
        return read_small_file(f, "CIFAR-10 batch", MAX_CIFAR_BATCH_BYTES) if f.is_file() else None

    return _cifar_from_reader(read, str(folder))


def read_cifar_archive(path: Path) -> ImageData:
    """CIFAR-10 straight from ``cifar-10-python.tar.gz`` (members found by their base name)."""
    path = Path(path)
    try:
        with tarfile.open(path, "r:*") as tf:
            members = {os.path.basename(m.name): m for m in tf.getmembers() if m.isfile()}

            def read(name: str) -> Optional[bytes]:
                m = members.get(name)
                if m is None:
                    return None
                if m.size > MAX_CIFAR_BATCH_BYTES:
                    raise NaspError(f"{path}: member {m.name} inflates to {m.size:,} bytes, more than the {MAX_CIFAR_BATCH_BYTES:,} "
                                    "a CIFAR-10 batch may have")
                fh = tf.extractfile(m)
                return fh.read() if fh is not None else None

            return _cifar_from_reader(read, str(path))
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise NaspError(f"{path}: corrupt or unreadable archive ({exc.__class__.__name__}: {exc})") from None


# ImageFolder ----------------------------------------------------------------------------------
def _scan_split(root: Path) -> tuple[list[Path], list[str]]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    return [root / c for c in classes], classes


def read_image_folder(path: Path, image_size: Optional[int] = None) -> ImageData:
    """``train/<class>/*`` and ``val/<class>/*`` image files (same classes in both)."""
    path = Path(path)
    size = image_size or 224
    splits = {}
    classes: list[str] = []
    for split in ("train", "val"):
        root = path / split
        if not root.is_dir():
            raise NaspError(f"{path}: ImageFolder data needs {split}/<class>/<image> folders; {root} is missing")
        dirs, names = _scan_split(root)
        if not names:
            raise NaspError(f"{root}: no class folders")
        if split == "train":
            classes = names
        elif names != classes:
            extra = sorted(set(names) ^ set(classes))
            raise NaspError(f"{root}: classes differ from train/ ({', '.join(extra[:5])})")
        files, labels = [], []
        for label, d in enumerate(dirs):
            for f in sorted(d.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(f)
                    labels.append(label)
        if not files:
            raise NaspError(f"{root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        splits[split] = FolderImages(files, labels, size)
    return ImageData(
        path.name or "images", splits["train"], splits["val"], len(classes), 3, (size, size), IMAGENET_MEAN, IMAGENET_STD,
        flip=True, crop_pad=max(1, size // 8), classes=classes, kind="imagenet",
    )


# digits ---------------------------------------------------------------------------------------
def load_digits_data(test_size: int = 360) -> ImageData:
    """scikit-learn's 8x8 digits: 1437 training and 360 test images (fixed stratified split)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(images, digits.target, test_size=test_size, stratify=digits.target, random_state=0)
    x_all = images.astype(np.float64) / 255.0
    mean, std = float(x_all.mean()), float(x_all.std())
    return ImageData(
        "digits", TensorImages(torch.from_numpy(x_tr), torch.from_numpy(y_tr)),
        TensorImages(torch.from_numpy(x_te), torch.from_numpy(y_te)), 10, 1, (8, 8), (mean,), (std,),
        flip=False, crop_pad=1, classes=[str(i) for i in range(10)], kind="cifar",
    )


# resolving --data -----------------------------------------------------------------------------
#: known names -> loader(data_dir, image_size)
SOURCES: Registry[Callable[[Optional[Path], Optional[int]], ImageData]] = Registry("image data set")
SOURCES.register("cifar10")(lambda data_dir, size: read_cifar_folder(fetch("cifar10", data_dir)))
SOURCES.register("digits")(lambda data_dir, size: load_digits_data())

#: path formats, tried in order: (recognises(path), reader(path, image_size))
FORMATS: list[tuple[Callable[[Path], bool], Callable[[Path, Optional[int]], ImageData]]] = [
    (lambda p: p.is_file() and (p.name.endswith((".tar.gz", ".tgz", ".tar")) or tarfile.is_tarfile(p)),
     lambda p, size: read_cifar_archive(p)),
    (lambda p: p.is_dir() and (p / "train").is_dir() and (p / "val").is_dir(), read_image_folder),
    (lambda p: p.is_dir(), lambda p, size: read_cifar_folder(p)),
]


def load_data(spec: str, data_dir: Optional[Path] = None, image_size: Optional[int] = None) -> ImageData:
    """The data set named or located by ``spec`` (see the module docstring)."""
    spec = str(spec)
    if spec in SOURCES:
        return SOURCES.get(spec)(data_dir, image_size)
    path = Path(spec).expanduser()
    if not path.exists():
        raise NaspError(f"--data {spec}: no such file or directory, and not a known name ({', '.join(SOURCES.names())})")
    for recognises, reader in FORMATS:
        if recognises(path):
            return reader(path, image_size)
    raise NaspError(f"--data {spec}: not a CIFAR-10 folder or archive, nor an ImageFolder (train/, val/)")


def search_split(n: int, portion: float = 0.5, seed: int = 0, subset: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """Shuffle the training indices (``seed``), keep ``subset`` of them, and split them into
    weight data (the first ``portion``) and architecture data (the rest)."""
    if not 0.0 < portion < 1.0:
        raise NaspError(f"--train-portion {portion}: must be strictly between 0 and 1")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if subset is not None:
        if subset < 2:
            raise NaspError(f"--subset {subset}: needs at least 2 examples")
        order = order[:subset]
    cut = int(math.floor(len(order) * portion))
    if cut < 1 or cut >= len(order):
        raise NaspError(f"{len(order)} training examples cannot be split into weight and architecture data")
    return order[:cut], order[cut:]


# batches --------------------------------------------------------------------------------------
@dataclass
class Augment:
    """Per-batch augmentation on the device: random crop with ``pad``, horizontal ``flip``, ``cutout``."""

    pad: int = 0
    flip: bool = False
    cutout: int = 0

    def __call__(self, x: Tensor, g: torch.Generator, total: Optional[int] = None, start: int = 0) -> Tensor:
        """Augment ``x``: rows ``start ..`` of a batch of ``total`` (default: ``x`` is the batch);
        the draws are made for the whole batch, so a slice is augmented as within the batch."""
        b, _, h, w = x.shape
        dev = x.device
        n = total if total is not None else b

        def draw(values: Tensor) -> Tensor:
            return values[start : start + b].to(dev)

        if self.pad > 0:
            p = self.pad
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            dy = draw(torch.randint(0, 2 * p + 1, (n,), generator=g))
            dx = draw(torch.randint(0, 2 * p + 1, (n,), generator=g))
            rows = (dy[:, None] + torch.arange(h, device=dev))[:, :, None]
            cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, :]
            x = padded[torch.arange(b, device=dev)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
        if self.flip:
            mask = draw(torch.rand(n, generator=g) < 0.5)
            x = torch.where(mask[:, None, None, None], x.flip(3), x)
        if self.cutout > 0:
            cy = draw(torch.randint(0, h, (n,), generator=g))
            cx = draw(torch.randint(0, w, (n,), generator=g))
            half = self.cutout // 2
            ys, xs = torch.arange(h, device=dev), torch.arange(w, device=dev)
            in_y = (ys[None] >= (cy[:, None] - half)) & (ys[None] < (cy[:, None] + half))
            in_x = (xs[None] >= (cx[:, None] - half)) & (xs[None] < (cx[:, None] + half))
            hole = (in_y[:, :, None] & in_x[:, None, :])[:, None]
            x = x.masked_fill(hole, 0.0)
        return nchw(x)


class Batches:
    """One pass over ``indices`` of an image set: normalised (and augmented) batches on ``device``.

    The order and the augmentation depend only on ``seed`` (use e.g. (run seed, epoch)).
    Training passes drop a last incomplete batch (batch norm needs full batches); evaluation
    passes keep it. In a data-parallel run (``world``) every batch is this rank's slice of the
    global batch: only those images are read, moved and augmented (a slice may be empty at the
    end of an evaluation pass).
    """

    def __init__(self, images: ImageSet, indices: Tensor, batch_size: int, device: torch.device, mean: Sequence[float],
                 std: Sequence[float], seed: int = 0, shuffle: bool = True, augment: Optional[Augment] = None,
                 drop_last: bool = True, world: World = World()) -> None:
        on = getattr(images, "on", None)
        self.images = on(device) if on is not None and device.type == "cuda" else images
        self.indices, self.batch_size = indices, batch_size
        self.device, self.seed, self.shuffle, self.augment = device, seed, shuffle, augment
        self.drop_last, self.world = drop_last, world
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255.0

    def __len__(self) -> int:
        n = len(self.indices)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        g = torch.Generator().manual_seed(self.seed)
        order = self.indices[torch.randperm(len(self.indices), generator=g)] if self.shuffle else self.indices
        non_blocking = self.device.type == "cuda"
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            total = len(idx)
            start, stop = self.world.bounds(total)
            idx = idx[start:stop]
            x = self.images.images(idx)
            y = self.images.labels[idx.to(self.images.labels.device)]
            if non_blocking and x.device.type == "cpu":
                x, y = x.pin_memory(), y.pin_memory()
            x = x.to(self.device, non_blocking=non_blocking).float()
            x = (x - self.mean) / self.std
            if self.augment is not None:  # draws for the whole global batch: a rank's slice as in one process
                x = self.augment(x, g, total, start)
            yield nchw(x), y.to(self.device, non_blocking=non_blocking)


def batch_seed(seed: int, stream: int, index: int) -> int:
    """A distinct generator seed for (run seed, stream, epoch/pass index)."""
    return (seed * 1_000_003 + stream * 10_007 + index) % (2**63 - 1)
