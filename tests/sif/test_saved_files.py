"""Saved SIF files validated on load (arch.json, model.pt) and options that would size tables
beyond memory: each a one-line error naming the file or the option."""
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import nasp.devices
from nasp.cli import main

FAST = ["--dim", "4", "--batch-size", "128"]


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _error(r) -> str:
    """The one ``Error:`` line of a failed command (no traceback)."""
    assert r.exit_code == 1, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in r.output, r.output
    return errors[0]


@pytest.fixture
def searched(tiny_ratings, tmp_path) -> Path:
    out = tmp_path / "search"
    r = _invoke("sif", "search", "--data", tiny_ratings, "--strategy", "nasp", "--epochs", "2", "--warmup-epochs", "1", "--max-epochs", "1",
                "--baselines", "none", "--no-refit", *FAST, "--out", out, "-q")
    assert r.exit_code == 0, r.output
    return out


def _arch_error(tiny_ratings, path: Path, tmp_path: Path) -> str:
    return _error(_invoke("sif", "train", "--arch", path, "--data", tiny_ratings, "--max-epochs", "1", "--out", tmp_path / "t"))


@pytest.mark.parametrize("change, says", [
    (lambda a: a["model"].__setitem__("dim", -3), "'model.dim' is -3, not an embedding dimension (1..65536)"),
    (lambda a: a["model"].__setitem__("dim", 1e12), "'model.dim' is 1000000000000.0, not an embedding dimension"),
    (lambda a: a.pop("model"), "no 'model' (an object with the model's shape)"),
    (lambda a: a.__setitem__("format", "nasp-sif-arch/99"), "unknown format 'nasp-sif-arch/99'; this version reads 'nasp-sif-arch/1'"),
    (lambda a: a["elementwise_mlp"]["user"].__setitem__("outer.bias", [math.nan]), "malformed 'elementwise_mlp' (user.outer.bias)"),
])
def test_a_tampered_arch_file_is_one_line(searched, tiny_ratings, tmp_path, change, says):
    arch = json.loads((searched / "arch.json").read_text())
    assert arch["elementwise_mlp"] is not None
    change(arch)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(arch))  # NaN is written as the token NaN, which Python's reader accepts
    assert _arch_error(tiny_ratings, path, tmp_path).startswith(f"Error: {path}: {says}")
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("change, says", [
    (lambda m: m.__setitem__("seen_items", m["seen_items"] + 10**6), "seen_items out of range (0..39)"),
    (lambda m: m.__setitem__("seen_users", m["seen_users"] - 10**6), "seen_users out of range (0..59)"),
    (lambda m: m.__setitem__("user_ids", m["user_ids"][:-1]), "59 user ids for a table of 60 users"),
    (lambda m: m["state"]["item_emb.weight"].__setitem__(0, math.nan), "'item_emb.weight' holds NaN or infinite values"),
    (lambda m: m["state"].__setitem__("user_emb.weight", m["state"]["user_emb.weight"].long()),
     "'user_emb.weight' is torch.int64, expected torch.float32"),
])
def test_a_tampered_model_file_is_one_line(searched, tmp_path, change, says):
    model = tmp_path / "model.pt"
    saved = torch.load(searched / "model.pt", weights_only=True)
    change(saved)
    torch.save(saved, model)
    assert _error(_invoke("sif", "recommend", "--model", model, "--user", "1")) == f"Error: {model}: not a valid SIF model ({says})"


def test_an_untampered_model_still_recommends(searched):
    assert _invoke("sif", "recommend", "--model", searched, "--user", "1").exit_code == 0


def test_dim_and_negatives_are_bounded_before_anything_is_allocated(tiny_ratings, tmp_path, monkeypatch):
    r = _invoke("sif", "train", "--ifc", "multiply", "--data", tiny_ratings, "--dim", "100000000", "--out", tmp_path / "d")
    assert r.exit_code == 2 and "Invalid value for '--dim'" in r.output and not (tmp_path / "d").exists()
    r = _invoke("sif", "train", "--ifc", "multiply", "--data", tiny_ratings, "--task", "ranking", "--negatives", "1000000000",
                "--out", tmp_path / "n")
    assert "--negatives 1000000000: at most 1000 (every batch holds that many items per positive)" in _error(r)
    monkeypatch.setattr(nasp.devices, "available_memory", lambda device: 2**20)  # a machine with 1 MiB free
    r = _invoke("sif", "train", "--ifc", "multiply", "--data", tiny_ratings, "--dim", "4096", "--max-epochs", "1",
                "--out", tmp_path / "m")
    assert _error(r).startswith("Error: --dim 4096: the embedding tables of ")
    assert "GiB, more than the 0.0 GiB of cpu memory available; choose a smaller value" in _error(r)
