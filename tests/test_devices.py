"""``--amp`` and ``--deterministic`` (nasp/devices.py): what works on the CPU, and bad input as one line.
The CUDA side (autocast, cuDNN/cuBLAS determinism) is exercised by benchmarks/gpu_check.sh."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from nasp.cli import NaspGroup, main
from nasp.cnn.data import write_synthetic_cifar
from nasp.devices import autocast_loss, check_amp, nondeterministic_op, set_deterministic, tune_host_allocator
from nasp.errors import NaspError
from nasp.runs import RunDir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def restore_determinism():
    """``--deterministic`` switches a process-wide torch mode on: switch it back after the test."""
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def test_amp_is_an_error_on_the_cpu_and_a_no_op_wrapper_off_cuda():
    with pytest.raises(NaspError, match="--amp: bfloat16 autocast is for CUDA devices"):
        check_amp(True, torch.device("cpu"))
    check_amp(False, torch.device("cpu"))

    def loss(net, batch):
        return batch

    assert autocast_loss(loss, torch.device("cpu"), True) is loss


@pytest.mark.parametrize("domain", ["sif", "cnn", "rnn"])
def test_amp_on_the_cpu_is_one_line_before_anything_is_written(domain, tmp_path, ratings_writer, corpus_writer):
    data = {"sif": lambda: ratings_writer(tmp_path / "u.data"), "cnn": lambda: write_synthetic_cifar(tmp_path / "cifar", per_batch=8),
            "rnn": lambda: corpus_writer(tmp_path / "corpus")}[domain]()
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [domain, "search", "--data", str(data), "--amp", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: --amp:") and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_deterministic_runs_on_the_cpu_and_is_recorded(tmp_path, restore_determinism, ratings_writer):
    out = tmp_path / "run"
    args = ["sif", "train", "--data", str(ratings_writer(tmp_path / "u.data")), "--ifc", "multiply", "--dim", "4",
            "--max-epochs", "2", "--batch-size", "128", "--deterministic", "--json"]
    first = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert torch.are_deterministic_algorithms_enabled()
    assert json.loads((out / "config.json").read_text())["options"]["deterministic"] is True
    again = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "again")])
    same = lambda s: {k: v for k, v in json.loads(s).items() if "second" not in k and k != "run_dir"}  # noqa: E731
    assert same(again.stdout) == same(first.stdout)


def test_an_op_without_a_deterministic_kernel_is_one_line(restore_determinism):
    set_deterministic(True)
    group = NaspGroup("nasp")

    @group.command()
    def put() -> None:  # torch.Tensor.put_ has no deterministic kernel, on the CPU too
        torch.zeros(3).put_(torch.tensor([0]), torch.tensor([1.0]))

    result = CliRunner().invoke(group, ["put"])
    assert result.exit_code == 1, result.output
    assert result.output == ("Error: --deterministic: put_ has no deterministic implementation on this device; "
                             "run without --deterministic (or on the CPU)\n")
    assert nondeterministic_op(RuntimeError("something else")) is None


def test_a_run_config_without_an_option_is_refused_in_one_line_and_resumes_once_restored(tmp_path, monkeypatch, ratings_writer):
    """config.json missing an option (--deterministic): one line naming it, nothing lost; with
    the option back the run resumes."""
    out = tmp_path / "run"
    args = ["sif", "train", "--data", str(ratings_writer(tmp_path / "u.data")), "--ifc", "multiply", "--dim", "4",
            "--max-epochs", "3", "--patience", "3", "--batch-size", "128", "--out", str(out)]
    save, calls = RunDir.save_checkpoint, []

    def dies_at_the_second(self, state):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return save(self, state)

    monkeypatch.setattr(RunDir, "save_checkpoint", dies_at_the_second)
    assert CliRunner().invoke(main, args).exit_code == 130
    monkeypatch.setattr(RunDir, "save_checkpoint", save)
    original = (out / "config.json").read_text()
    config = json.loads(original)
    del config["options"]["deterministic"]
    (out / "config.json").write_text(json.dumps(config))
    refused = CliRunner().invoke(main, ["sif", "train", "--resume", "--out", str(out), "--json"])
    assert refused.exit_code == 1 and "option --deterministic is missing" in refused.output and "Traceback" not in refused.output
    assert (out / "checkpoint.pt").exists()
    (out / "config.json").write_text(original)
    resumed = CliRunner().invoke(main, ["sif", "train", "--resume", "--out", str(out), "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["epochs_trained"] == 3


def test_the_host_allocator_is_tuned_on_glibc_unless_the_environment_tunes_it(monkeypatch):
    import platform

    for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert tune_host_allocator() is True
    else:
        assert tune_host_allocator() is False
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")  # the user's own setting wins
    assert tune_host_allocator() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072")
    assert tune_host_allocator() is False


def test_the_host_allocator_is_left_alone_when_another_malloc_is_preloaded(tmp_path):
    """A preloaded malloc (as jemalloc or tcmalloc would be; here a tiny one forwarding to
    glibc's) means glibc's thresholds do not apply: the call says False."""
    import platform
    import shutil

    cc = shutil.which("cc") or shutil.which("gcc")
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or cc is None:
        pytest.skip("needs glibc and a C compiler")
    source = tmp_path / "mymalloc.c"
    source.write_text("#include <stddef.h>\nextern void *__libc_malloc(size_t);\n"
                      "void *malloc(size_t n) { return __libc_malloc(n); }\n")
    lib = tmp_path / "libmymalloc.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(source)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    code = "from nasp.devices import tune_host_allocator; print(tune_host_allocator())"
    for preload, expected in ((None, "True"), (str(lib), "False")):
        run_env = dict(env, **({"LD_PRELOAD": preload} if preload else {}))
        out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 0, out.stderr[-1000:]
        assert out.stdout.strip() == expected


def test_flush_denormals_flushes_inside_and_restores_after():
    from nasp.devices import flush_denormals

    tiny = torch.tensor([1e-39])  # below float32's smallest normal number (1.2e-38)
    assert float(tiny * 1.0) != 0.0  # torch's default keeps denormals (and every command restores it)
    with flush_denormals() as supported:
        if not supported:
            pytest.skip("this CPU cannot flush denormals")
        assert float(torch.tensor([1e-39]) * 1.0) == 0.0
    assert float(tiny * 1.0) != 0.0


def test_a_command_flushes_denormals_for_its_length_only(tmp_path, monkeypatch):
    flushed = []
    real_save = RunDir.save_checkpoint

    def save(self, state):  # called during training, after every epoch
        flushed.append(float(torch.tensor([1e-39]) * 1.0) == 0.0)
        real_save(self, state)

    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    torch.set_flush_denormal(False)
    monkeypatch.setattr(RunDir, "save_checkpoint", save)
    data = tmp_path / "r.tsv"
    data.write_text("".join(f"{u}\t{i}\t{(u * i) % 5 + 1}\n" for u in range(1, 21) for i in range(1, 16)))
    result = CliRunner().invoke(main, ["sif", "train", "--data", str(data), "--ifc", "multiply", "--max-epochs", "2",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert flushed and all(flushed)
    assert float(torch.tensor([1e-39]) * 1.0) != 0.0  # torch's default again once the command ended
