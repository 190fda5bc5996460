"""Item-item recommenders in closed form: EASE^R and ItemKNN, beside the searched models.

Both score a user's items as ``x_u B``: ``x_u`` the user's 0/1 row of training interactions,
``B`` an item x item matrix with a zero diagonal, computed once from the training data (no
gradient steps). They are ranking models (``--task ranking``): they predict how likely an
interaction is, not a rating.

* ``ease`` (Steck, WWW 2019): ``P = (X^T X + lambda I)^-1``, ``B = I - P diag(1/diag P)``,
  i.e. ``B_ij = -P_ij / P_jj`` off the diagonal and 0 on it.
* ``itemknn`` (cosine item-based CF, as RecBole's ItemKNN): ``S_ij = c_ij / (|x_i| |x_j| + shrink)``
  with ``c`` the co-occurrence counts; each item keeps its ``k`` most similar items (the column
  ``B[:, j]`` holds item j's neighbours), the diagonal is zero.

The regularisation ``lambda`` (EASE) and the neighbourhood size ``k`` (ItemKNN) are chosen on
validation over a grid (``--ease-lambda``, ``--knn-neighbours``: one value or a list). The
matrix is ``items^2`` float32 values; ``check_memory`` refuses a catalogue whose matrices would
not fit before anything is allocated.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from nasp.devices import available_memory
from nasp.errors import NaspError
from nasp.loop import improves
from nasp.registry import Registry

from .data import Interactions, Splits

log = logging.getLogger("nasp.sif")

#: the grids searched on validation when none is given
DEFAULT_LAMBDAS = (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)
DEFAULT_NEIGHBOURS = (20, 50, 100, 200)
DEFAULT_SHRINK = 10.0
#: the settings' names in the summary (``ease_lambda``, ``itemknn_neighbours``, ``itemknn_shrink``)
SETTING_NAMES = {"lam": "lambda", "k": "neighbours", "shrink": "shrink"}
#: item x item float32 matrices alive at once while a model is computed (Gram, inverse, result)
MATRICES = {"ease": 3, "itemknn": 3}


def parse_grid(text: object, name: str, integer: bool) -> tuple:
    """``"100,500"`` (or a number, or a list) -> the values, each > 0; else a one-line error."""
    parts = text.split(",") if isinstance(text, str) else list(text) if isinstance(text, (list, tuple)) else [text]
    values = []
    for part in parts:
        try:
            value = float(part)
        except (TypeError, ValueError):
            raise NaspError(f"{name} {text!r}: give a number or a comma-separated list of numbers") from None
        if not np.isfinite(value) or value <= 0 or (integer and value != int(value)):
            raise NaspError(f"{name} {part!r}: must be {'a whole number' if integer else 'a number'} > 0")
        values.append(int(value) if integer else value)
    if not values:
        raise NaspError(f"{name}: give at least one value")
    return tuple(dict.fromkeys(values))


@dataclass
class ItemItemConfig:
    """Shape and settings of an item-item model: ``model`` (ease or itemknn), the sizes, and the
    values to choose from on validation (``lambdas`` for EASE, ``neighbours`` and ``shrink`` for
    ItemKNN; a saved model holds the chosen one)."""

    model: str
    num_users: int
    num_items: int
    lambdas: tuple = DEFAULT_LAMBDAS
    neighbours: tuple = DEFAULT_NEIGHBOURS
    shrink: float = DEFAULT_SHRINK
    space: str = field(default="itemitem", init=False)
    #: what the search of the pipeline reads: the model's name is its "interaction"
    ops: tuple = field(default=(), init=False)

    def __post_init__(self) -> None:
        ITEM_MODELS.get(self.model)
        self.lambdas = parse_grid(self.lambdas, "--ease-lambda", integer=False)
        self.neighbours = parse_grid(self.neighbours, "--knn-neighbours", integer=True)
        if not (np.isfinite(self.shrink) and self.shrink >= 0):
            raise NaspError(f"--knn-shrink {self.shrink!r}: must be a number >= 0")
        self.ops = (self.model,)

    def grid(self) -> list[dict]:
        """Every setting to try, as keyword arguments of the model's fit function."""
        if self.model == "ease":
            return [{"lam": lam} for lam in self.lambdas]
        return [{"k": k, "shrink": self.shrink} for k in self.neighbours]

    def with_setting(self, setting: dict) -> "ItemItemConfig":
        """This config with one chosen setting (what a saved model holds)."""
        if self.model == "ease":
            return ItemItemConfig(self.model, self.num_users, self.num_items, lambdas=(setting["lam"],), shrink=self.shrink)
        return ItemItemConfig(self.model, self.num_users, self.num_items, neighbours=(setting["k"],), shrink=setting["shrink"])

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("ops")
        return {**d, "lambdas": list(self.lambdas), "neighbours": list(self.neighbours)}

    @classmethod
    def from_dict(cls, d: dict) -> "ItemItemConfig":
        try:
            return cls(d["model"], int(d["num_users"]), int(d["num_items"]), tuple(d.get("lambdas", DEFAULT_LAMBDAS)),
                       tuple(d.get("neighbours", DEFAULT_NEIGHBOURS)), float(d.get("shrink", DEFAULT_SHRINK)))
        except (KeyError, TypeError, ValueError) as exc:
            raise NaspError(f"not an item-item model config ({exc.__class__.__name__}: {exc})") from None


def interaction_matrix(data: Interactions, num_users: int, num_items: int) -> sp.csr_matrix:
    """The 0/1 user x item matrix of ``data`` (rows of unknown ids left out, repeats counted once)."""
    keep = ((data.users >= 0) & (data.items >= 0)).cpu().numpy()
    users, items = data.users.cpu().numpy()[keep], data.items.cpu().numpy()[keep]
    x = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=(num_users, num_items))
    x.data[:] = 1.0  # a pair given twice is one interaction
    return x


def ease(x: sp.csr_matrix, lam: float) -> Tensor:
    """EASE^R's B for the 0/1 matrix ``x`` and L2 weight ``lam`` (float32, zero diagonal)."""
    gram = torch.from_numpy((x.T @ x).toarray().astype(np.float32))
    gram.diagonal().add_(lam)
    p = torch.linalg.inv(gram)
    del gram
    b = p.div_(-p.diagonal().clone())  # B_ij = -P_ij / P_jj (columns scaled by their diagonal)
    b.fill_diagonal_(0.0)
    return b


def itemknn(x: sp.csr_matrix, k: int, shrink: float) -> Tensor:
    """ItemKNN's B: cosine similarities with ``shrink``, each column keeping its ``k`` largest
    (the item's neighbours), zero diagonal (float32)."""
    co = torch.from_numpy((x.T @ x).toarray().astype(np.float32))
    norms = co.diagonal().clone().sqrt_()
    sim = co.div_(norms[:, None] * norms[None, :] + shrink)
    sim.nan_to_num_(0.0)  # an item without training interactions (0 / 0 when shrink is 0) has no neighbours
    sim.fill_diagonal_(0.0)
    k = min(k, sim.shape[0] - 1)
    if k < sim.shape[0] - 1:
        top = torch.topk(sim, k, dim=0).indices  # [k, items]: the rows to keep in each column
        mask = torch.zeros_like(sim, dtype=torch.bool).scatter_(0, top, True)
        sim.masked_fill_(~mask, 0.0)
    return sim


#: item-item models by name -> the function computing B from the 0/1 matrix and one setting
ITEM_MODELS: Registry[Callable[..., Tensor]] = Registry("item-item model")
ITEM_MODELS.register("ease")(ease)
ITEM_MODELS.register("itemknn")(itemknn)


def memory_needed(model: str, num_items: int) -> int:
    """Bytes of the item x item matrices ``model`` holds at once for ``num_items`` items."""
    return MATRICES[model] * num_items * num_items * 4


def memory_shortfall(model: str, num_items: int, available: Optional[int] = None) -> Optional[str]:
    """Why ``model`` does not fit in the memory available for ``num_items`` items (None: it fits)."""
    need = memory_needed(model, num_items)
    available = available_memory(torch.device("cpu")) if available is None else available  # computed on the CPU
    if available is None or need <= available:
        return None
    return (f"{model} on {num_items:,} items needs {need / 2**30:.1f} GiB ({MATRICES[model]} item x item float32 "
            f"matrices) and {available / 2**30:.1f} GiB is available")


def check_memory(model: str, num_items: int, available: Optional[int] = None) -> int:
    """The bytes ``model`` needs for a catalogue of ``num_items``; a one-line error naming that
    size when it is more than the memory available."""
    shortfall = memory_shortfall(model, num_items, available)
    if shortfall:
        raise NaspError(f"{shortfall}; use a smaller catalogue (e.g. --min-rating) or a machine with more memory")
    return memory_needed(model, num_items)


class ItemItemNetwork(nn.Module):
    """Scores ``x_u B`` for an item-item model; ``x_u`` are the user's training interactions
    (kept as CSR buffers), ``B`` the item x item matrix. Offers what the pipeline's evaluation,
    ``save_model`` and ``Recommender`` read of a network."""

    def __init__(self, config: ItemItemConfig) -> None:
        super().__init__()
        self.config = config
        n, m = config.num_users, config.num_items
        self.register_buffer("B", torch.zeros(m, m))
        self.register_buffer("indptr", torch.zeros(n + 1, dtype=torch.long))
        self.register_buffer("indices", torch.zeros(0, dtype=torch.long))
        self.register_buffer("known_users", torch.ones(n, dtype=torch.bool))
        self.register_buffer("known_items", torch.ones(m, dtype=torch.bool))

    def set_interactions(self, x: sp.csr_matrix) -> None:
        """The training interactions each user's score reads."""
        self.indptr = torch.as_tensor(x.indptr.astype(np.int64), device=self.B.device)
        self.indices = torch.as_tensor(x.indices.astype(np.int64), device=self.B.device)

    def load_model_state(self, state: dict) -> None:
        """Load a saved state (the CSR buffers may differ in length from a fresh network's); a
        ValueError for a matrix with NaN or infinite values or interactions out of range."""
        self.indices = torch.empty_like(state["indices"])
        self.load_state_dict(state)
        if not bool(torch.isfinite(self.B).all()):
            raise ValueError("'B' holds NaN or infinite values")
        ptr, idx = self.indptr, self.indices
        if (int(ptr[0]) != 0 or int(ptr[-1]) != len(idx) or bool((ptr[1:] < ptr[:-1]).any())
                or (idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.config.num_items))):
            raise ValueError("the saved interactions ('indptr', 'indices') are out of range")

    def arch_parameters(self) -> list:
        return []

    def user_rows(self, users: Tensor) -> Tensor:
        """Dense 0/1 rows [len(users), items] of the users' training interactions."""
        users = users.clamp_min(0)
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lengths = ends - starts
        rows = torch.repeat_interleave(torch.arange(len(users), device=users.device), lengths)
        offsets = torch.arange(int(lengths.sum()), device=users.device) - torch.repeat_interleave(
            torch.cumsum(lengths, 0) - lengths, lengths)
        x = torch.zeros(len(users), self.config.num_items, device=self.B.device)
        x[rows, self.indices[torch.repeat_interleave(starts, lengths) + offsets]] = 1.0
        return x

    @torch.no_grad()
    def score_all(self, users: Tensor, items: Optional[Tensor] = None) -> Tensor:
        """Scores [len(users), len(items)] (every item when ``items`` is None)."""
        scores = self.user_rows(users) @ self.B
        return scores if items is None else scores[:, items]

    @torch.no_grad()
    def predict(self, users: Tensor, items: Tensor, chunk: int = 1024) -> Tensor:
        """Scores of (user, item) pairs; 0 where the user or the item is unknown. The distinct
        users are scored ``chunk`` at a time (a dense [chunk, items] block each)."""
        known = (users >= 0) & (items >= 0)
        distinct, row = torch.unique(users.clamp_min(0), return_inverse=True)
        scores = torch.zeros(len(users), device=self.B.device)
        for start in range(0, len(distinct), chunk):
            pairs = ((row >= start) & (row < start + chunk)).nonzero().squeeze(1)
            block = self.user_rows(distinct[start:start + chunk]) @ self.B
            scores[pairs] = block[row[pairs] - start, items[pairs].clamp_min(0)]
        return torch.where(known, scores, torch.zeros_like(scores))


def fit(splits: Splits, config: ItemItemConfig, task, device: torch.device, test: bool = False) -> tuple[ItemItemNetwork, dict]:
    """Compute the model for every setting of ``config``'s grid on the training split, keep the
    one that validates best (the only one without validation data), and return it with its
    summary: validation metrics (test too with ``test``), the chosen setting, the grid's scores."""
    if task.name != "ranking":
        raise NaspError(f"{config.model} is a ranking model (it scores items from a user's interactions, not ratings): "
                        "use it with --task ranking")
    need = check_memory(config.model, config.num_items)
    t0 = time.perf_counter()
    x = interaction_matrix(splits.train, config.num_users, config.num_items)
    net = ItemItemNetwork(config).to(device)
    with torch.no_grad():
        net.known_users.zero_()
        net.known_items.zero_()
        net.known_users[splits.train.users] = True
        net.known_items[splits.train.items] = True
    net.set_interactions(x)
    on_device = splits.to(device)
    metric, scores, best = task.metric, {}, None
    grid = config.grid()
    if not len(splits.valid) and len(grid) > 1:  # nothing to choose on: the first value, said
        log.warning("%s: no validation data to choose a setting on; using the first of the grid, %s", config.model, grid[0])
        grid = grid[:1]
    for setting in grid:
        net.B = ITEM_MODELS.get(config.model)(x, **setting).to(device)
        valid = task.evaluate(net, on_device, "valid") if len(splits.valid) else {}
        label = ",".join(f"{v:g}" for v in setting.values())
        scores[label] = valid.get(metric)
        log.info("%s %s: %s %s", config.model, label, metric, f"{valid[metric]:.4f}" if metric in valid else "-")
        if best is None or (metric in valid and improves(valid[metric], best[1], task.higher_is_better)):
            best = (setting, valid.get(metric), valid, net.B)
    setting, _, valid, net.B = best
    net.config = config.with_setting(setting)
    seconds = time.perf_counter() - t0
    summary = {"interaction": config.model, **valid, **(task.evaluate(net, on_device, "test") if test else {}),
               **{f"{config.model}_{SETTING_NAMES[k]}": v for k, v in setting.items()}, f"{config.model}_grid_{metric}": scores,
               "train_seconds": round(seconds, 3), "epochs_trained": 0, "best_epoch": 0,
               "params": int(config.num_items) ** 2, "memory_bytes": need, "wall_seconds_train": round(seconds, 3)}
    return net, summary
