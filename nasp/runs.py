"""Run directories: the directory itself, its lock, atomic writes and JSON helpers (DESIGN.md, "Runs").

A run directory holds ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` (atomic), ``arch.json``,
``summary.json`` (written last: its presence means the run finished) and plots. The loop that
fills one is ``nasp.loop.RunLoop``; seeds live in ``nasp.seeding``, devices in ``nasp.devices``.
"""
from __future__ import annotations

import datetime as _dt
import errno
import io
import json
import logging
import math
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

try:
    import fcntl
except ImportError:  # Windows: no advisory locks (the run directory is then not guarded)
    fcntl = None  # type: ignore[assignment]

from .distributed import world
from .errors import NaspError

log = logging.getLogger("nasp")

CONFIG, METRICS_FILE, CHECKPOINT, ARCH, SUMMARY = "config.json", "metrics.jsonl", "checkpoint.pt", "arch.json", "summary.json"
LOCK = ".lock"  # holds the advisory lock of the process writing the run (pid, host, start time)


# files ----------------------------------------------------------------------------------------
def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def io_error(path: os.PathLike | str, exc: OSError, doing: str = "cannot write") -> NaspError:
    """One line for a failed write: the path and the cause (a full disk is named as such)."""
    cause = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        cause += " (the disk is full)"
    return NaspError(f"{path}: {doing}: {cause}")


def on_main(write: Callable[[], None]) -> None:
    """Run ``write`` on rank 0 of a data-parallel run only, and let every rank return once it
    has, so that a rank reading the file next reads what rank 0 wrote (one process: just write)."""
    current = world()
    if current.main:
        write()
    current.barrier()


def write_bytes_atomic(path: os.PathLike | str, data: bytes) -> None:
    """Write ``data`` through a temporary file, fsync and a rename, so a reader (or a resume after a
    crash or a full disk) sees the old file or the new one, never half of one. The file gets the
    mode the user's umask gives every other file (not mkstemp's 0600). Rank 0 only (``on_main``)."""
    on_main(lambda: _write_bytes_atomic(Path(path), data))


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            _write(fh, data, path)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise io_error(path, exc) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _write(fh: Any, data: bytes, path: Path) -> None:
    """``fh.write(data)`` for the run file ``path``: the one place run files are written (tests make
    it fail as a full disk would)."""
    fh.write(data)


def save_torch(path: os.PathLike | str, obj: Any) -> None:
    """``torch.save`` made atomic, with a full disk or a read-only directory reported in one line
    naming ``path`` (``torch.save`` to a file only says ``enforce fail at inline_container.cc``)."""
    def write() -> None:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        _write_bytes_atomic(Path(path), buffer.getvalue())

    on_main(write)


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None, so it is strict JSON (null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """Strict JSON (NaN and infinities become null) of run data (tensors, NumPy scalars, paths)."""
    return json.dumps(finite(_plain(obj)), allow_nan=False, **kwargs)


def _plain(obj: Any) -> Any:
    """Tensors, NumPy scalars and paths as plain Python values, recursively."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (torch.Tensor, np.generic, Path)):
        return _plain(_json_default(obj))
    return obj


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write strict JSON atomically (see ``write_bytes_atomic``)."""
    write_bytes_atomic(path, (dumps(obj, indent=2) + "\n").encode())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class RunLock:
    """An exclusive advisory lock (``fcntl.flock``) on ``RUN/.lock``, held while this object lives
    (or until ``release``) and dropped by the kernel when the process dies, however it dies.
    The file names its holder (pid, host, start time) for the refusal message."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK
        try:  # never through a link: a .lock replaced by a link to a user file must not be written into
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP or self.path.is_symlink():
                raise NaspError(f"{self.path}: is a symbolic link, not this run's lock file; remove it") from None
            raise io_error(folder, exc) from None
        self._fh = os.fdopen(fd, "r+")
        try:
            if fcntl is not None:
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "another process"
            self._fh.close()
            raise NaspError(f"{folder}: in use by {holder}; wait for that run to end (or stop it) "
                            "before writing to the same run directory") from None
        started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        try:
            os.fchmod(self._fh.fileno(), 0o666 & ~_umask())
            self._fh.seek(0)
            self._fh.truncate()
            self._fh.write(f"pid {os.getpid()} on {socket.gethostname()} (started {started})\n")
            self._fh.flush()
        except OSError as exc:
            self.release()
            raise io_error(self.path, exc) from None

    def release(self) -> None:
        """Drop the lock (closing the file drops it)."""
        if not self._fh.closed:
            self._fh.close()


class RunClock:
    """A run's time across resumes: the seconds of the earlier processes, as the last checkpoint
    this process read recorded them (``RUN_SECONDS``), plus this process's own."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.before = 0.0

    def this_process(self) -> float:
        return time.perf_counter() - self.started

    def total(self) -> float:
        return self.before + self.this_process()

    def saw(self, seconds: float) -> None:
        """A checkpoint of an earlier process recorded ``seconds`` of the run."""
        self.before = max(self.before, seconds)


RUN_SECONDS = "run_seconds"
"""The checkpoint entry with the run's seconds so far (every process of it; ``RunClock``)."""


class RunDir:
    """One run's directory.

    A new run needs an absent or empty directory; ``resume=True`` needs an unfinished run with a
    checkpoint. Either way the mistake is reported before anything is written.
    """

    def __init__(self, path: os.PathLike | str, resume: bool = False, clock: Optional[RunClock] = None) -> None:
        self.path = Path(path)
        self.resume = resume
        self.clock = clock or RunClock()  # a stage's sub-run shares its run's clock
        self._check()
        self.lock: Optional[RunLock] = None
        current = world()
        current.barrier()  # every rank has checked before rank 0 creates anything
        if not current.main:  # other ranks of a data-parallel run read the run; rank 0 writes it
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise io_error(self.path, exc, "cannot create the run directory") from None
        self.lock = RunLock(self.path)
        self._check()  # again, now that no other process can change it

    def _check(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise NaspError(f"--out {self.path}: exists and is not a directory")
        if self.resume:
            if not (self.path / CONFIG).exists():
                raise NaspError(f"--resume: {self.path} is not a run directory (no {CONFIG})")
            if (self.path / SUMMARY).exists():
                raise NaspError(f"--resume: run {self.path} already finished ({SUMMARY} present)")
        elif self.path.exists() and any(p.name != LOCK for p in self.path.iterdir()):
            raise NaspError(
                f"--out {self.path}: directory exists and is not empty; pass --resume to continue it or choose another --out"
            )

    def close(self) -> None:
        """Release the run directory's lock (it is released anyway when the process ends)."""
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def file(self, name: str) -> Path:
        return self.path / name

    # config -----------------------------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        write_json_atomic(self.file(CONFIG), config)

    def read_config(self) -> dict:
        return read_json(self.file(CONFIG), "run config")

    # metrics ----------------------------------------------------------------------------------
    def append_metrics(self, row: dict) -> None:
        """Append one row (strict JSON: NaN is written as null). A failed write (a full disk) is
        cut back off, so the file keeps whole lines only."""
        on_main(lambda: self._append(row))

    def _append(self, row: dict) -> None:
        path = self.file(METRICS_FILE)
        data = (dumps(row) + "\n").encode()
        try:
            with open(path, "ab") as fh:
                size = fh.seek(0, os.SEEK_END)
                try:
                    _write(fh, data, path)
                    fh.flush()
                except OSError:
                    fh.truncate(size)
                    raise
        except OSError as exc:
            raise io_error(path, exc) from None

    def read_metrics(self) -> list[dict]:
        """The rows written so far; a torn last line (a crash in the middle of a write) is dropped."""
        path = self.file(METRICS_FILE)
        if not path.exists():
            return []
        lines = [line for line in read_text(path, "metrics file").split("\n") if line.strip()]
        rows = []
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):
                    break
                raise NaspError(f"{path}: line {number}: not valid JSON") from None
            if not isinstance(row, dict):
                raise NaspError(f"{path}: line {number}: not a JSON object")
            epoch = row.get("epoch", 0)
            if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
                raise NaspError(f"{path}: line {number}: 'epoch' is {json.dumps(epoch)}, not a count of epochs (0, 1, ...)")
            rows.append(row)
        return rows

    def truncate_metrics(self, epochs_done: int) -> None:
        """Keep the rows of the first ``epochs_done`` epochs; rows written after the last checkpoint go.
        Rows count epochs from 1 (``epoch <= epochs_done`` stay); a file whose first row is epoch 0
        (written before epochs counted from 1) keeps ``epoch < epochs_done``."""
        rows = self.read_metrics()
        first = int(rows[0].get("epoch", 1)) if rows else 1
        rows = [r for r in rows if int(r.get("epoch", first)) - first < epochs_done]
        write_bytes_atomic(self.file(METRICS_FILE), "".join(dumps(r) + "\n" for r in rows).encode())

    # checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self, state: dict) -> None:
        """Replace ``checkpoint.pt`` atomically (with the run's seconds so far); on a failed write
        the previous one stays intact."""
        save_torch(self.file(CHECKPOINT), {**state, RUN_SECONDS: self.clock.total()})

    def has_checkpoint(self) -> bool:
        return self.file(CHECKPOINT).exists()

    def load_checkpoint(self, map_location: Any = "cpu", required: Optional[Mapping[str, type]] = None) -> dict:
        """Load ``checkpoint.pt`` (``weights_only``); ``required`` maps keys it must hold to their types."""
        path = self.file(CHECKPOINT)
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except FileNotFoundError:
            raise NaspError(f"--resume: {self.path} has no {CHECKPOINT} yet; start it again without --resume") from None
        except Exception as exc:  # a corrupt or foreign file
            raise NaspError(f"{path}: cannot be read as a checkpoint ({exc.__class__.__name__})") from None
        if not isinstance(state, dict):
            raise NaspError(f"{path}: not a checkpoint (a {type(state).__name__}, not a dict of state)")
        for key, kind in (required or {}).items():
            if key not in state:
                raise NaspError(f"{path}: not a checkpoint of this run (no {key!r} entry)")
            if not isinstance(state[key], kind):
                raise NaspError(f"{path}: entry {key!r} is a {type(state[key]).__name__}, expected {kind.__name__}")
        seconds = state.get(RUN_SECONDS, 0.0)  # absent in checkpoints written before it was recorded
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds < math.inf:
            raise NaspError(f"{path}: entry {RUN_SECONDS!r} is {seconds!r}, not a number of seconds >= 0")
        self.clock.saw(float(seconds))
        return state

    # results ----------------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> None:
        write_json_atomic(self.file(name), obj)

    def finish(self, summary: dict) -> dict:
        """Write ``summary.json`` — the last file of a finished run — with ``seconds`` (the whole
        run, across resumes) and ``seconds_this_process``; returns what was written."""
        summary = {**summary, "seconds": round(self.clock.total(), 3),
                   "seconds_this_process": round(self.clock.this_process(), 3)}
        write_json_atomic(self.file(SUMMARY), summary)
        return summary


def read_text(path: os.PathLike | str, what: str = "file") -> str:
    """The UTF-8 text of a run file; a missing, unreadable or non-UTF-8 one raises NaspError naming it."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise NaspError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise NaspError(f"{path}: is a directory, expected a {what}") from None
    except UnicodeDecodeError as exc:
        raise NaspError(f"{path}: not a {what} (not UTF-8 text: byte {exc.start})") from None
    except OSError as exc:
        raise io_error(path, exc, "cannot read") from None


def read_json(path: os.PathLike | str, what: str = "JSON file") -> Any:
    """Load a JSON file; a missing or malformed one raises NaspError naming it."""
    path = Path(path)
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise NaspError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None


def _short(exc: BaseException) -> str:
    """An exception as a short clause on one line (a missing key, or the first lines of a message)."""
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]!r} entry" if exc.args else "a missing entry"
    text = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2]) or exc.__class__.__name__
    return text if len(text) <= 240 else text[:237] + "..."
