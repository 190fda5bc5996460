"""The data root and known data sets: resolve a name to files, download once with a checksum.

``--data`` takes a path or a known name. Names resolve under the data root (``data_root``):
``--data-dir``, else ``$NASP_DATA_DIR``, else the clone's ``datasets/`` when nasp runs from a
clone (whatever the working directory; ``make setup`` links a sibling ``../shared/data/<name>``
there, so the commands and the Makefile find the same files), else a per-user cache,
``${XDG_CACHE_HOME:-~/.cache}/nasp/datasets``.
Domains register their data sets in ``DATASETS``; data sets that ship with a library (nothing
to place or download) in ``BUNDLED``, so that ``nasp data list`` shows them too; data sets made
from a known one on the user's machine (``nasp data prepare``) in ``PREPARED``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from .errors import NaspError
from .registry import Registry

log = logging.getLogger("nasp")


@dataclass(frozen=True)
class KnownDataset:
    """A data set that ``fetch`` can find or download.

    Attributes:
        name: the name users pass to ``--data``.
        url: where the archive is downloaded from.
        sha256: checksum of the archive (downloads that do not match are discarded).
        md5: used when the publisher gives only an MD5 sum (GroupLens does).
        folder: the folder under the data root that holds the files once unpacked.
        files: paths inside ``folder`` that must exist for the data set to be usable.
        description: one line for ``nasp data list``.
    """

    name: str
    url: str
    sha256: Optional[str]
    folder: str
    files: tuple[str, ...]
    description: str = ""
    md5: Optional[str] = None


@dataclass(frozen=True)
class BundledDataset:
    """A data set that ships with a library: always present, nothing to download."""

    name: str
    description: str
    provider: str


DATASETS: Registry = Registry("data set")
BUNDLED: Registry = Registry("bundled data set")


def register_dataset(ds: KnownDataset) -> KnownDataset:
    DATASETS.register(ds.name)(ds)
    return ds


def register_bundled(ds: BundledDataset) -> BundledDataset:
    BUNDLED.register(ds.name)(ds)
    return ds


@dataclass(frozen=True)
class PreparedDataset:
    """A data set made on this machine from a known one (``nasp data prepare NAME``), never
    downloaded or shipped: ``make(source_file, out_file)`` writes ``folder/file`` under the data
    root from the first file of the known data set ``source`` and returns the rows written."""

    name: str
    source: str
    folder: str
    file: str
    description: str
    make: Callable[[Path, Path], int]


PREPARED: Registry = Registry("prepared data set")


def register_prepared(ds: PreparedDataset) -> PreparedDataset:
    PREPARED.register(ds.name)(ds)
    return ds


def prepared_path(name: str, data_dir: Optional[os.PathLike | str] = None, must_exist: bool = False) -> Path:
    """The file of prepared data set ``name`` under the data root; ``must_exist``: one clear
    error saying how to make it when it is not there."""
    ds = PREPARED.get(name)
    path = data_root(data_dir) / ds.folder / ds.file
    if must_exist and not path.is_file():
        raise NaspError(f"{name}: not prepared under {data_root(data_dir)}; run 'nasp data prepare {name}' "
                        f"(it reads {ds.source}) or pass --data PATH")
    return path


def prepare(name: str, data_dir: Optional[os.PathLike | str] = None, source: Optional[os.PathLike | str] = None,
            out: Optional[os.PathLike | str] = None) -> tuple[Path, int]:
    """Make prepared data set ``name`` from ``source`` (a file; default: the known source data
    set under the data root, fetched as ``--data NAME`` would) into ``out`` (default: its place
    under the data root, ``prepared_path``). Returns the file written and its row count."""
    ds = PREPARED.get(name)
    src = Path(source).expanduser() if source is not None else fetch(ds.source, data_dir) / DATASETS.get(ds.source).files[0]
    if not src.exists():
        raise NaspError(f"{src}: no such file")
    target = Path(out).expanduser() if out is not None else prepared_path(name, data_dir)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NaspError(f"{target.parent}: cannot create ({exc.strerror or exc})") from None
    return target, ds.make(src, target)


# the CNN domain reads it with scikit-learn's load_digits (nasp/cnn/data.py)
register_bundled(BundledDataset("digits", "scikit-learn's 8x8 handwritten digits: 1,797 images, 10 classes", "scikit-learn"))


#: the most bytes a small input file (a genotype, a list of user ids) may have
MAX_SMALL_FILE_BYTES = 16 << 20
#: the most an archive member may inflate, uncompressed over compressed size (ratings text
#: compresses 3-6x; a zip bomb inflates hundreds or thousands of times)
MAX_INFLATE_RATIO = 100


def text_lines(path: os.PathLike | str, what: str) -> Iterator[tuple[int, str]]:
    """The non-blank lines of a regular text file (``regular_file``) with their 1-based numbers,
    line ends stripped; undecodable bytes replaced."""
    with open(regular_file(path, what), encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                yield number, line.rstrip("\r\n")


def regular_file(path: os.PathLike | str, what: str) -> Path:
    """``path`` if it is a regular file (links followed), else a ``NaspError``: a device
    (``/dev/zero``), a FIFO or a socket is refused before it is opened, so nothing blocks or
    reads without end."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise NaspError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise NaspError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a device")
        raise NaspError(f"{what} {path}: {kind}, not a regular file")
    return path


def check_small_file(path: os.PathLike | str, what: str, limit: int = MAX_SMALL_FILE_BYTES) -> Path:
    """``path`` if it is a regular file of at most ``limit`` bytes, else a ``NaspError``."""
    path = regular_file(path, what)
    if path.stat().st_size > limit:
        raise NaspError(f"{what} {path}: {path.stat().st_size:,} bytes, more than the {limit:,} this kind of file may have")
    return path


def read_small_file(path: os.PathLike | str, what: str, limit: int = MAX_SMALL_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (``check_small_file``), read no
    further than ``limit`` + 1 bytes (a file that grows meanwhile is refused too)."""
    path = check_small_file(path, what, limit)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise NaspError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise NaspError(f"{what} {path}: more than the {limit:,} bytes this kind of file may have")
    return raw


def check_zip_member(info: zipfile.ZipInfo, where: str) -> None:
    """Refuse a zip member that inflates more than ``MAX_INFLATE_RATIO`` times (a zip bomb)
    before it is read; reading stops at its declared size."""
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > (1 << 20) and ratio > MAX_INFLATE_RATIO:
        raise NaspError(f"{where}: {info.filename} inflates {ratio:,.0f}-fold ({info.compress_size:,} to {info.file_size:,} "
                        f"bytes), more than the {MAX_INFLATE_RATIO} a data file does; refused as a likely zip bomb")


#: where the data root is when ``--data-dir`` is not given, in order (``data_root``; for help texts and errors)
DATA_ROOT_DEFAULT = "$NASP_DATA_DIR, else the clone's datasets/, else ~/.cache/nasp/datasets"


def data_root(data_dir: Optional[os.PathLike | str] = None) -> Path:
    """The folder known data set names resolve under: ``data_dir`` (``--data-dir``), else
    ``$NASP_DATA_DIR``, else the ``datasets/`` folder of the clone nasp runs from (an editable
    install or a source tree; found from any working directory), else a per-user cache,
    ``${XDG_CACHE_HOME:-~/.cache}/nasp/datasets``."""
    given = data_dir or os.environ.get("NASP_DATA_DIR")
    if given:
        return Path(given).expanduser()
    clone = clone_datasets()
    if clone is not None:
        return clone
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "nasp" / "datasets"


def clone_datasets(package_parent: Optional[Path] = None) -> Optional[Path]:
    """The ``datasets/`` folder beside the ``nasp`` package when the package lives in a clone
    (its ``setup.py`` beside it too, so that a ``datasets`` package in site-packages never
    counts), else None. ``package_parent``: the folder holding ``nasp/`` (default: this one's)."""
    parent = package_parent if package_parent is not None else Path(__file__).resolve().parents[1]
    folder = parent / "datasets"
    return folder if folder.is_dir() and (parent / "setup.py").is_file() else None


def dataset_path(name: str, data_dir: Optional[os.PathLike | str] = None) -> Path:
    ds = DATASETS.get(name)
    return data_root(data_dir) / ds.folder


def is_present(name: str, data_dir: Optional[os.PathLike | str] = None) -> bool:
    ds = DATASETS.get(name)
    folder = dataset_path(name, data_dir)
    return all((folder / f).exists() for f in ds.files)


def checksum(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_files(spec: object, data_dir: Optional[os.PathLike | str] = None) -> list[Path]:
    """What ``--data spec`` reads: the file or folder given, else a known or prepared data set's
    files (when present), else nothing (a data set that ships with a library, such as digits)."""
    path = Path(str(spec)).expanduser()
    if path.exists():
        return [path]
    if str(spec) in DATASETS and is_present(str(spec), data_dir):
        return [dataset_path(str(spec), data_dir) / f for f in DATASETS.get(str(spec)).files]
    if str(spec) in PREPARED and prepared_path(str(spec), data_dir).is_file():
        return [prepared_path(str(spec), data_dir)]
    return []


FINGERPRINT_CHUNK = 1 << 20
"""Bytes read at a time by ``fingerprint``."""


def _data_files_under(folder: Path) -> list[Path]:
    """The files under ``folder``, sorted, without hidden ones and without run directories (a
    folder holding a ``.lock``: ``--data .`` beside ``runs/``)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not (Path(root) / d / ".lock").exists()]
        found += [Path(root) / f for f in files if not f.startswith(".") and (Path(root) / f).is_file()]
    return sorted(found)


def fingerprint(path: os.PathLike | str) -> dict:
    """The size and blake2b digest of a data file, or of every file under a data folder (their
    names included; ``_data_files_under``), read in chunks; ``{}`` for anything else (a FIFO)."""
    path = Path(path)
    files = _data_files_under(path) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        return {}
    digest, size = hashlib.blake2b(digest_size=16), 0
    for file in files:
        if file != path:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as fh:
            while chunk := fh.read(FINGERPRINT_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    return {"size": size, "blake2b": digest.hexdigest()}


def fetch(name: str, data_dir: Optional[os.PathLike | str] = None, download: bool = True) -> Path:
    """The folder of known data set ``name``, downloading and unpacking it first if needed.

    Offline (or with ``download=False``) a missing data set raises ``NaspError`` naming the
    files to place and where. An archive already in the data root that fails the checksum was
    not downloaded by this call: it is refused, never deleted (only a download of this call
    that fails the checksum is removed).
    """
    ds = DATASETS.get(name)
    root = data_root(data_dir)
    folder = root / ds.folder
    if is_present(name, data_dir):
        return folder
    where = ", ".join(str(folder / f) for f in ds.files)
    roots = f"(the data root: --data-dir, else {DATA_ROOT_DEFAULT})"
    if not download:
        raise NaspError(f"data set {name!r} not found: place {where} {roots}, from {ds.url}, or pass --data PATH")
    archive = root / Path(ds.url).name
    created = [p for p in (root, *root.parents) if not p.exists()]  # removed again if the fetch fails
    try:
        root.mkdir(parents=True, exist_ok=True)
        downloaded = not archive.exists()
        if downloaded:
            _download(ds.url, archive)
        _check_archive(archive, ds, downloaded)
        _unpack(archive, root)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        _remove_empty(created)
        raise NaspError(
            f"data set {name!r} is not under {root} and could not be downloaded ({reason}); "
            f"download {ds.url} and unpack it so that {where} exist(s) {roots}, or pass --data PATH"
        ) from None
    if not is_present(name, data_dir):
        raise NaspError(f"{archive}: unpacked, but {where} is still missing")
    return folder


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders of ``folders`` (deepest first) that are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _check_archive(archive: Path, ds: KnownDataset, downloaded: bool) -> None:
    """Compare ``archive`` with the publisher's checksum. A mismatching download of this call is
    deleted; a file that was there before is left alone and refused by name."""
    for algorithm, expected in (("sha256", ds.sha256), ("md5", ds.md5)):
        if not expected:
            continue
        actual = checksum(archive, algorithm)
        if actual == expected:
            continue
        if downloaded:
            archive.unlink()
            raise NaspError(f"{ds.url}: {algorithm} checksum mismatch (download corrupted?); deleted it, try again")
        raise NaspError(
            f"{archive}: {algorithm} {actual} differs from the published {expected}; this file was not "
            f"downloaded now, so it is left as it is: pass --data {archive} to use it as is, or move it away to download"
        )


def _download(url: str, target: Path) -> None:
    log.warning("downloading %s -> %s", url, target)
    part = target.with_name(target.name + ".part")
    with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as fh:
        shutil.copyfileobj(response, fh)
    os.replace(part, target)


def _unpack(archive: Path, root: Path) -> None:
    """Unpack a .zip or .tar(.gz) archive under ``root``, refusing paths that leave it."""
    root_resolved = root.resolve()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    if not (root / member).resolve().is_relative_to(root_resolved):
                        raise NaspError(f"{archive}: unsafe path {member!r} in archive")
                zf.extractall(root)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                tf.extractall(root, filter="data")
        else:
            raise NaspError(f"{archive}: not a zip or tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise NaspError(f"{archive}: unreadable archive ({exc})") from None
