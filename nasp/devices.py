"""Devices for every domain: ``--device`` parsing, peak memory, precision (``--amp``) and
determinism (``--deterministic``).

``resolve_device`` turns ``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) into a usable
torch device; ``peak_memory_mb`` reads the peak memory of a run on it.

``--amp`` runs the forward passes of training under bfloat16 autocast on CUDA (the loss in
float32; bfloat16 keeps float32's range, so no gradient scaler is needed). It has no use on the
CPU here (bfloat16 matrix products are slower than float32 ones on most CPUs), so there it is an
error rather than a silent no-op.

``--deterministic`` asks torch for deterministic algorithms everywhere
(``torch.use_deterministic_algorithms``), cuDNN's deterministic kernels without benchmarking,
and cuBLAS's fixed workspace (``CUBLAS_WORKSPACE_CONFIG``), so that a CUDA run repeats exactly
with the same seed (runs on the CPU repeat anyway). An op that has no deterministic kernel then
raises inside torch; ``nondeterministic_op`` turns that into one line.

``flush_denormals`` treats denormal floats as zero on the CPU while a run trains: weights that
L2 regularisation shrinks towards zero otherwise slow every CPU operation on them many times
over (a ComplEx training on Kinships with weight decay 3e-5: 3.2x). Every command sets it for
its own length (``commands.start_run``), a Python ``SIF.fit`` for its own.

``tune_host_allocator`` keeps glibc's malloc from giving freed memory back to the system after
every step (the ``nasp`` command calls it once; Python users may).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import resource
import sys
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, ContextManager, Iterator, Optional

import torch

from .distributed import local_device
from .errors import NaspError

#: cuBLAS's setting for reproducible results (NVIDIA's documented value)
CUBLAS_WORKSPACE = ":4096:8"


def resolve_device(spec: str) -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``; unusable ones raise NaspError."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return local_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise NaspError(f"--device {spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise NaspError(f"--device {spec!r} is not supported; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise NaspError(f"--device {spec}: CUDA is not available on this machine (use --device cpu)")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise NaspError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
    return local_device(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: CUDA max allocated on a GPU, else the process's max RSS
    (``ru_maxrss`` is in bytes on macOS, in KiB on Linux)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def check_amp(amp: bool, device: torch.device) -> None:
    """A NaspError for ``--amp`` on anything but a CUDA device."""
    if amp and device.type != "cuda":
        raise NaspError(f"--amp: bfloat16 autocast is for CUDA devices, and this run is on {device}; "
                        "drop --amp (or run with --device cuda)")


def autocast(device: torch.device, enabled: bool) -> ContextManager:
    """bfloat16 autocast on CUDA when ``enabled``, else nothing."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def autocast_loss(loss: Callable[[Any, Any], torch.Tensor], device: torch.device,
                  enabled: bool) -> Callable[[Any, Any], torch.Tensor]:
    """``loss(network, batch)`` whose forward pass runs under ``autocast``; the loss is float32."""
    if not (enabled and device.type == "cuda"):
        return loss

    def amp_loss(network: Any, batch: Any) -> torch.Tensor:
        with autocast(device, True):
            out = loss(network, batch)
        return out.float()

    return amp_loss


#: glibc's ``mallopt`` parameters (malloc.h) and the values ``tune_host_allocator`` sets: blocks
#: from 32 MiB on are mapped (and unmapped when freed) on their own; below that, freed memory
#: stays with the process until 1 GiB of it lies free at the top of the heap (glibc: 128 KiB)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
HOST_MMAP_THRESHOLD, HOST_TRIM_THRESHOLD = 32 * 2 ** 20, 2 ** 30
_MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


@contextmanager
def flush_denormals() -> Iterator[bool]:
    """Flush denormal floats to zero in CPU operations inside the block (SSE3 CPUs; yields
    whether the CPU supports it), then back to torch's default (kept). Changes results only where
    a value falls below 1.2e-38 in magnitude, which float32 cannot hold at full precision anyway."""
    supported = torch.set_flush_denormal(True)
    try:
        yield supported
    finally:
        if supported:
            torch.set_flush_denormal(False)


def tune_host_allocator() -> bool:
    """Stop glibc's malloc from trimming freed memory back to the system at every step.

    A training step on the CPU allocates and frees tensors of a few MiB; with glibc's default,
    dynamic thresholds the freed heap top is often returned to the system and faulted back in
    at the next step (about 420 page faults, a fifth of a SIF retraining step on ml-100k). Fixed
    thresholds (``HOST_MMAP_THRESHOLD``, ``HOST_TRIM_THRESHOLD``) keep it. The price: up to 1 GiB
    of freed memory per malloc arena stays with the process (the peak RSS of a 20M-rating SIF
    benchmark rose 4%). Does nothing, and returns False, off glibc or when the environment
    already sets malloc's thresholds (``MALLOC_*_`` or ``GLIBC_TUNABLES``); True once both are
    set. Also False when another allocator serves the process's ``malloc`` (jemalloc or tcmalloc
    preloaded): glibc's thresholds would not apply to it."""
    if any(name in os.environ for name in _MALLOC_ENV) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        return False
    if not _glibc_serves_malloc(libc):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, HOST_MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, HOST_TRIM_THRESHOLD))


def _glibc_serves_malloc(libc: ctypes.CDLL) -> bool:
    """Whether the process's ``malloc`` (the first one in the global symbol scope) is libc's own."""
    try:
        ours = ctypes.cast(ctypes.CDLL(None).malloc, ctypes.c_void_p).value
        glibc = ctypes.cast(libc.malloc, ctypes.c_void_p).value
    except (OSError, AttributeError):
        return False
    return ours == glibc


def set_deterministic(enabled: bool) -> None:
    """Deterministic algorithms (and cuDNN/cuBLAS settings) for this process when ``enabled``."""
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)  # read when cuBLAS starts
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


_NO_KERNEL = re.compile(r"^(.*?) does not have a deterministic implementation")


def nondeterministic_op(exc: BaseException) -> Optional[str]:
    """The one-line message for torch's error about an op without a deterministic kernel (under
    ``--deterministic``), or None for any other exception."""
    if not isinstance(exc, RuntimeError):
        return None
    match = _NO_KERNEL.search(str(exc).strip())
    if match is None:
        return None
    return (f"--deterministic: {match.group(1).strip()} has no deterministic implementation on this device; "
            "run without --deterministic (or on the CPU)")


def available_memory(device: torch.device) -> Optional[int]:
    """Bytes an allocation on ``device`` can still get: free CUDA memory, else the host's
    ``MemAvailable`` (Linux) or free physical pages; None when the system does not say."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes: int, what: str, device: torch.device) -> None:
    """A NaspError naming ``what`` (an option and what it sizes) when ``nbytes`` exceed the memory
    ``device`` has available, before anything that large is allocated."""
    free = available_memory(device)
    if free is not None and nbytes > free:
        raise NaspError(f"{what} need about {nbytes / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB of "
                        f"{device.type} memory available; choose a smaller value")
