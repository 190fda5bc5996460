import hashlib
import zipfile
from pathlib import Path

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


def test_a_failed_download_leaves_no_new_data_dir(tmp_path, monkeypatch):
    """--data-dir folders the fetch created are removed again when the download fails; a folder
    that was there before stays."""
    import nasp.data

    _toy(tmp_path, monkeypatch)
    monkeypatch.setattr(nasp.data, "_download", lambda url, target: (_ for _ in ()).throw(OSError("no network")))
    with pytest.raises(NaspError, match="could not be downloaded"):
        fetch("toy", tmp_path / "new" / "root")
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(NaspError):
        fetch("toy", tmp_path / "kept" / "root")
    assert (tmp_path / "kept").is_dir() and not (tmp_path / "kept" / "root").exists()


def test_make_data_links_links_shared_data_sets_into_datasets_never_over_an_entry(tmp_path, monkeypatch):
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    clone = tmp_path / "clone"
    (clone / "datasets").mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "Makefile", clone / "Makefile")
    shared = tmp_path / "shared" / "data"
    for name in ("ml-100k", "ptb"):
        (shared / name).mkdir(parents=True)
        (shared / name / "f").write_text(name)
    (clone / "datasets" / "ptb").mkdir()  # the user's own copy stays
    subprocess.run(["make", "-s", "data-links", f"SHARED_DATA={shared}"], cwd=clone, check=True, capture_output=True)
    link = clone / "datasets" / "ml-100k"
    assert link.is_symlink() and (link / "f").read_text() == "ml-100k"
    assert not (clone / "datasets" / "ptb").is_symlink()
    subprocess.run(["make", "-s", "data-links", f"SHARED_DATA={shared}"], cwd=clone, check=True, capture_output=True)  # again: no-op
    assert "export NASP_DATA_DIR" not in (clone / "Makefile").read_text()  # one data root, the commands' own
    from nasp.data import data_root

    monkeypatch.delenv("NASP_DATA_DIR", raising=False)
    # the commands' default (this clone's datasets/), which the links fill
    assert data_root() == Path(__file__).resolve().parents[1] / "datasets"


def test_the_data_root_order(tmp_path, monkeypatch):
    """--data-dir, else $NASP_DATA_DIR, else the clone's datasets/ (from any working directory),
    else the per-user cache ${XDG_CACHE_HOME:-~/.cache}/nasp/datasets."""
    import nasp.data
    from nasp.data import clone_datasets, data_root

    clone = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)  # another working directory: the clone's data is still found
    monkeypatch.delenv("NASP_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_root() == clone / "datasets" == clone_datasets()
    assert data_root(tmp_path / "given") == tmp_path / "given"
    monkeypatch.setenv("NASP_DATA_DIR", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env" and data_root(tmp_path / "given") == tmp_path / "given"
    monkeypatch.delenv("NASP_DATA_DIR")
    monkeypatch.setattr(nasp.data, "clone_datasets", lambda: None)  # an installed package, no clone
    assert data_root() == tmp_path / "cache" / "nasp" / "datasets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root() == tmp_path / "home" / ".cache" / "nasp" / "datasets"


def test_only_a_clone_has_a_data_folder_beside_the_package(tmp_path):
    """A ``datasets`` folder beside the package counts only in a clone (``setup.py`` beside it):
    in site-packages it may be another project's package."""
    from nasp.data import clone_datasets

    (tmp_path / "datasets").mkdir()
    assert clone_datasets(tmp_path) is None  # e.g. site-packages/datasets
    (tmp_path / "setup.py").write_text("")
    assert clone_datasets(tmp_path) == tmp_path / "datasets"
    assert clone_datasets(tmp_path / "elsewhere") is None


def test_a_known_name_resolves_under_the_clone_from_another_directory(tmp_path, monkeypatch):
    """``dataset_path`` of a known name, run from elsewhere, points into the clone's datasets/."""
    from nasp.data import dataset_path

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NASP_DATA_DIR", raising=False)
    assert dataset_path("ml-100k") == Path(__file__).resolve().parents[1] / "datasets" / "ml-100k"
