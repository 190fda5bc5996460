"""Data-parallel runs under ``torchrun``: which rank this process is, and the few collectives the
core needs.

``torchrun --standalone --nproc-per-node N --no-python nasp <domain> search|train ...`` starts N
processes of the same command; torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and the
rendezvous address), and ``init`` joins them into one process group: gloo on CPU, NCCL on CUDA
(each rank on ``cuda:LOCAL_RANK``). Everything else reads ``world()``, a small value built from
torch's process group, so one process (no torchrun) is simply the world of size 1 and every
collective below is then a no-op.

What a data-parallel run does (docs/ARCHITECTURE.md, "Data-parallel runs"):

- every rank builds the same global batches (they depend on seed and epoch only) and trains on
  its slice of each (``World.shard``); ``--batch-size`` is the global batch in both modes;
- before every optimizer step, of the weights and of the architecture, the gradients are
  averaged over the ranks, weighted by each rank's share of the batch (``average_gradients``;
  row-sparse ones are gathered, not densified), so the step equals the one-process step on the
  whole batch and every rank takes the same one;
- evaluation is sharded and its sums are added over the ranks (``sum``);
- after every epoch the ranks check that they hold the same architecture and weights (``agree``);
- only rank 0 writes files (``is_main``; ``nasp.runs`` skips every write elsewhere);
- a rank waits at most ``$NASP_DIST_TIMEOUT`` seconds (default 300) for the others in a
  collective, so a stopped or frozen rank ends the run instead of hanging it.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn
import torch.distributed as dist

from .errors import NaspError

#: what torchrun sets for every worker
ENV_WORLD_SIZE, ENV_RANK, ENV_LOCAL_RANK = "WORLD_SIZE", "RANK", "LOCAL_RANK"
#: seconds a rank waits for the others in a collective before the run stops (``process_group_timeout``)
ENV_TIMEOUT, DEFAULT_TIMEOUT = "NASP_DIST_TIMEOUT", 300


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (``World()``: one process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this rank writes the run's files (rank 0)."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    # data -------------------------------------------------------------------------------------
    def bounds(self, n: int) -> tuple[int, int]:
        """This rank's [start, stop) of ``n`` items split into ``size`` contiguous, near-equal
        parts (the first ``n % size`` parts one longer: ``torch.tensor_split``'s split)."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def shard(self, x: Tensor, dim: int = 0) -> Tensor:
        """This rank's contiguous slice of ``x`` along ``dim`` (a view; ``x`` itself in one process)."""
        if not self.parallel:
            return x
        start, stop = self.bounds(x.shape[dim])
        return x.narrow(dim, start, stop - start)

    # collectives ------------------------------------------------------------------------------
    def average(self, grads: Sequence[Optional[Tensor]], like: Sequence[Tensor], examples: int) -> list[Optional[Tensor]]:
        """The mean over the ranks of ``grads`` (one per tensor of ``like``), weighted by
        ``examples``, this rank's share of the batch: sum_r n_r g_r / sum_r n_r, the gradient of
        the whole batch's mean loss. An entry that is None on every rank stays None; one that
        some rank has counts as zero where it is None.

        Row-sparse gradients (``nn.Embedding(sparse=True)``'s) stay sparse: every rank gathers
        the others' rows and values and adds them up, so a step of a large table moves only the
        rows some rank's batch touched, as in one process. Any other sparse gradient, or one
        sparse on some ranks and dense on others, is densified. At most four collectives: which
        entries exist, the examples and every rank's sparse sizes; the dense values (one flat
        buffer); the sparse rows and the sparse values (one buffer each)."""
        grads = list(grads)
        if not self.parallel or not grads:
            return grads
        device, n = like[0].device, len(grads)
        grads = [g.coalesce() if g is not None and g.is_sparse and g.sparse_dim() == 1 else g for g in grads]
        row_sparse = [g is not None and g.is_sparse and g.sparse_dim() == 1 for g in grads]
        sizes = torch.zeros(self.size, n, dtype=torch.int64, device=device)  # each rank fills its own row
        sizes[self.rank] = torch.tensor([g._nnz() if r else 0 for g, r in zip(grads, row_sparse)], dtype=torch.int64)
        info = torch.cat([torch.tensor([g is not None for g in grads] + row_sparse + [examples], dtype=torch.int64,
                                       device=device), sizes.reshape(-1)])
        dist.all_reduce(info)
        present, sparse, total = info[:n].tolist(), info[n : 2 * n].tolist(), max(1, int(info[2 * n]))
        sizes = info[2 * n + 1 :].view(self.size, n)
        out: list[Optional[Tensor]] = [None] * n
        on_rows = [i for i in range(n) if present[i] and sparse[i] == present[i]]
        dense = [i for i in range(n) if present[i] and i not in on_rows]
        if dense:
            flat = []
            for i in dense:
                g = grads[i]
                g = torch.zeros_like(like[i]) if g is None else (g.to_dense() if g.is_sparse else g)
                flat.append(g.reshape(-1).to(torch.float32) * float(examples))
            buffer = torch.cat(flat)
            dist.all_reduce(buffer)
            buffer /= total
            offset = 0
            for i in dense:
                out[i] = buffer[offset : offset + like[i].numel()].view_as(like[i]).to(like[i].dtype)
                offset += like[i].numel()
        if on_rows:
            gathered = self._gather_rows([grads[i] for i in on_rows], [like[i] for i in on_rows], examples, sizes[:, on_rows])
            for i, (rows, values) in zip(on_rows, gathered):
                out[i] = torch.sparse_coo_tensor(rows.unsqueeze(0), (values / total).to(like[i].dtype), like[i].shape,
                                                 check_invariants=False).coalesce()
        return out

    def _gather_rows(self, grads: list[Optional[Tensor]], like: list[Tensor], examples: int,
                     sizes: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Every rank's (row indices, values x ``examples``) of the coalesced row-sparse ``grads``,
        concatenated in rank order (the same on every rank); ``sizes[r, j]``: rank r's rows of
        entry j (0 where it has none). Two all-gathers: the rows, then the values, of all entries."""
        widths = torch.tensor([math.prod(w.shape[1:]) for w in like], dtype=torch.int64, device=sizes.device)
        counts, lengths = sizes.sum(1).tolist(), (sizes * widths).sum(1).tolist()
        rows = [g.indices()[0] for g in grads if g is not None and g._nnz()]
        values = [g.values().reshape(-1).to(torch.float32) * float(examples) for g in grads if g is not None and g._nnz()]
        device = like[0].device
        rows = torch.cat(rows + [torch.zeros(max(counts) - counts[self.rank], dtype=torch.long, device=device)])
        values = torch.cat(values + [torch.zeros(max(lengths) - lengths[self.rank], dtype=torch.float32, device=device)])
        all_rows, all_values = [torch.empty_like(rows) for _ in range(self.size)], [torch.empty_like(values) for _ in range(self.size)]
        dist.all_gather(all_rows, rows)
        dist.all_gather(all_values, values)
        per_entry: list[tuple[list[Tensor], list[Tensor]]] = [([], []) for _ in like]
        for r in range(self.size):
            row_parts = torch.split(all_rows[r][: counts[r]], sizes[r].tolist())
            value_parts = torch.split(all_values[r][: lengths[r]], (sizes[r] * widths).tolist())
            for j, w in enumerate(like):
                per_entry[j][0].append(row_parts[j])
                per_entry[j][1].append(value_parts[j].view(-1, *w.shape[1:]))
        return [(torch.cat(rs), torch.cat(vs)) for rs, vs in per_entry]

    def average_gradients(self, params: Sequence[nn.Parameter], examples: int) -> None:
        """``average`` of the parameters' ``.grad``, stored back (nothing in one process)."""
        if not self.parallel:
            return
        params = list(params)
        for p, g in zip(params, self.average([p.grad for p in params], params, examples)):
            p.grad = g

    def broadcast(self, tensors: Sequence[Tensor]) -> None:
        """Overwrite ``tensors`` in place with rank 0's values (e.g. a network's state)."""
        if self.parallel:
            for t in tensors:
                dist.broadcast(t.data if isinstance(t, nn.Parameter) else t, src=0)

    def broadcast_state(self, module: nn.Module) -> None:
        """Give every rank rank 0's ``module`` state (parameters and saved buffers)."""
        self.broadcast(list(module.state_dict().values()))

    def sum(self, values: Tensor) -> Tensor:
        """``values`` added over the ranks (the same tensor in one process)."""
        if self.parallel:
            values = values.clone()
            dist.all_reduce(values)
        return values

    def gather(self, value: Tensor) -> Tensor:
        """Every rank's ``value`` (the same shape on each), stacked in rank order: [size, ...]."""
        if not self.parallel:
            return value.unsqueeze(0).clone()
        out = [torch.empty_like(value) for _ in range(self.size)]
        dist.all_gather(out, value.contiguous())
        return torch.stack(out)

    def mean_stats(self, stats: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per-key means over the ranks of an epoch's summed step statistics (one collective). The
        strategies' losses are already the whole batch's (``Strategy.sync_gradients``), the same
        on every rank; a stepper's own statistics are averaged here."""
        if not self.parallel or not stats:
            return stats
        keys = sorted(stats)
        stacked = self.sum(torch.stack([stats[k].detach().double().reshape(()) for k in keys])) / self.size
        return {k: stacked[i] for i, k in enumerate(keys)}

    def agree(self, value: Any, what: str) -> None:
        """A NaspError on every rank unless all ranks hold the same ``value`` (JSON-able)."""
        if not self.parallel:
            return
        digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
        digests: list[Optional[str]] = [None] * self.size
        dist.all_gather_object(digests, digest)
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        if differ:
            raise NaspError(f"ranks disagree on {what} (rank {differ[0]} differs from rank 0): the data-parallel run "
                            "lost step; report it with the command line")

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (any picklable object; ``value`` in one process)."""
        if not self.parallel:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.parallel:
            dist.barrier()


def world() -> World:
    """The world of this process: torch's process group when one is initialised, else one process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get(ENV_LOCAL_RANK, 0)))
    return World()


def is_main() -> bool:
    """Whether this process writes files: rank 0, or the only process."""
    return world().main


def launched_size() -> int:
    """The world size torchrun asked for (``WORLD_SIZE``; 1 without torchrun)."""
    try:
        return max(1, int(os.environ.get(ENV_WORLD_SIZE, "1")))
    except ValueError:
        raise NaspError(f"${ENV_WORLD_SIZE} = {os.environ[ENV_WORLD_SIZE]!r} is not a number") from None


def check_shards(count: int, flag: str, per_rank: int = 1, why: str = "") -> None:
    """A NaspError when ``count`` items of a global batch (``flag``) cannot give each of torchrun's
    processes ``per_rank`` of them (checked before a run starts, from ``WORLD_SIZE``)."""
    size = launched_size()
    if size > 1 and count < size * per_rank:
        raise NaspError(f"{flag} {count}: the batch is split over the {size} processes, so it needs at least "
                        f"{size * per_rank}{why}; raise it or start fewer processes (torchrun --nproc-per-node)")


def local_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for a CUDA device under torchrun, else ``device``."""
    if launched_size() == 1 or device.type != "cuda":
        return device
    if device.index is not None:
        raise NaspError(f"--device {device}: under torchrun every rank uses cuda:LOCAL_RANK; pass --device cuda")
    local = int(os.environ.get(ENV_LOCAL_RANK, "0"))
    if local >= torch.cuda.device_count():
        raise NaspError(f"torchrun started local rank {local}, but only {torch.cuda.device_count()} CUDA device(s) "
                        "are present: start at most that many processes per node")
    return torch.device("cuda", local)


def process_group_timeout() -> int:
    """Seconds a rank of a data-parallel run waits for the others in a collective before it stops
    with an error (a rank stopped or frozen): ``$NASP_DIST_TIMEOUT``, else 300."""
    raw = os.environ.get(ENV_TIMEOUT, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        seconds = int(raw)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise NaspError(f"${ENV_TIMEOUT} = {raw!r}: not a whole number of seconds >= 1")
    return seconds


def init(device: torch.device) -> World:
    """Join torchrun's process group (gloo on CPU, NCCL on CUDA) when this process was started by
    torchrun with more than one process; returns the world (one process: nothing to join)."""
    if launched_size() == 1:
        return world()
    if not dist.is_initialized():
        if not dist.is_available():
            raise NaspError("this build of torch has no torch.distributed: run one process")
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=process_group_timeout())
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, timeout=timeout)
    return world()


def lost_peer(exc: BaseException) -> Optional[str]:
    """The one-line message for a collective that failed because another rank stopped (gloo's
    "Connection reset by peer", NCCL's errors), or None for any other exception."""
    if launched_size() == 1 or not isinstance(exc, RuntimeError):
        return None
    text = str(exc)
    if not (isinstance(exc, dist.DistError) or "gloo" in text or "NCCL" in text or "Connection" in text):
        return None
    rank = os.environ.get(ENV_RANK, "?")
    return (f"rank {rank}: another process of this run stopped or did not answer within {process_group_timeout()} s "
            f"(${ENV_TIMEOUT}), so this one stops too (its own message says why)")


def shutdown() -> None:
    """Leave the process group (at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
