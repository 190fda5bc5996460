import hashlib
import zipfile

import pytest

from nasp import NaspError
from nasp.data import DATASETS, KnownDataset, fetch


def _toy(tmp_path, monkeypatch, md5=None):
    archive = tmp_path / "src" / "toy.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("toy/u.data", "1\t2\t3\t0\n")
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    ds = KnownDataset("toy", archive.as_uri(), None, "toy", ("u.data",), "a toy", md5=md5 or digest)
    monkeypatch.setitem(DATASETS._items, "toy", ds)
    return ds


def test_fetch_downloads_checks_and_unpacks_once(tmp_path, monkeypatch):
    _toy(tmp_path, monkeypatch)
    root = tmp_path / "root"
    folder = fetch("toy", root)
    assert (folder / "u.data").read_text() == "1\t2\t3\t0\n"
    (root / "toy.zip").unlink()  # present now: no second download
    assert fetch("toy", root) == folder


def test_fetch_rejects_a_checksum_mismatch(tmp_path, monkeypatch):
    _toy(tmp_path, monkeypatch, md5="0" * 32)
    with pytest.raises(NaspError, match="md5 checksum mismatch"):
        fetch("toy", tmp_path / "root")
    assert not (tmp_path / "root" / "toy.zip").exists()


def test_fetch_without_download_names_the_file(tmp_path, monkeypatch):
    _toy(tmp_path, monkeypatch)
    with pytest.raises(NaspError, match=r"place .*toy/u.data"):
        fetch("toy", tmp_path / "root", download=False)
