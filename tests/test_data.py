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


def test_a_placed_archive_with_another_checksum_is_refused_not_deleted(tmp_path, monkeypatch):
    import nasp.data

    _toy(tmp_path, monkeypatch, md5="0" * 32)
    root = tmp_path / "root"
    root.mkdir()
    placed = root / "toy.zip"
    placed.write_bytes(b"the user's own copy")

    def no_download(url, target):
        raise AssertionError("must not download over a placed file")

    monkeypatch.setattr(nasp.data, "_download", no_download)
    with pytest.raises(NaspError) as err:
        fetch("toy", root)
    message = str(err.value)
    assert str(placed) in message and "0" * 32 in message and hashlib.md5(b"the user's own copy").hexdigest() in message
    assert f"--data {placed}" in message and "\n" not in message
    assert placed.read_bytes() == b"the user's own copy"


def test_the_offline_error_names_the_data_root_options(tmp_path, monkeypatch):
    import nasp.data

    _toy(tmp_path, monkeypatch)

    def offline(url, target):
        raise OSError("no network")

    monkeypatch.setattr(nasp.data, "_download", offline)
    for download in (True, False):
        with pytest.raises(NaspError) as err:
            fetch("toy", tmp_path / "root", download=download)
        assert "NASP_DATA_DIR" in str(err.value) and "--data-dir" in str(err.value) and "toy/u.data" in str(err.value)
