"""Graph-propagated and item-item input encodings (the ``autocf-graph`` space's extra candidates).

Each encoding of a side is its own id embedding plus gated terms, each a fixed sparse operator
of the training data applied to one of the two id tables (the same tables the ``id`` candidate
reads; nothing new to learn but one gate per term):

* ``graph1``: e_x + g_1 (A E)_x, with A = D^-1/2 [[0, X], [X^T, 0]] D^-1/2 the normalised
  user-item graph of LightGCN (He et al., SIGIR 2020): a user's term averages its items'
  embeddings, an item's its users';
* ``graph2``: ``graph1`` plus g_2 (A^2 E)_x, the two-hop neighbours (users for a user, items
  for an item);
* ``itemitem`` (user side): e_u + g (M E_items)_u, M the rows of X S normalised to sum 1, S
  ItemKNN's cosine item-item similarities (each item's ``ITEMITEM_NEIGHBOURS`` nearest, shrunk
  by ``ITEMITEM_SHRINK``): the user represented through the items similar to their history,
  weighted by those similarities (FISM/SLIM-like, with fixed affinities and learned item vectors).

The gates start at zero, so every one of these starts as the ``id`` encoding it extends
(function-preserving: a local search compares it fairly). The terms are computed once per
refresh, as the history sums are (``HistoryEncoder``): a training forward reads them from a
cache computed from the tables at the last refresh, the gradient of the looked-up rows waits in
a pending buffer, and ``refreshes`` times per epoch the tables receive it (the operator's
transpose applied to it) and the cache is recomputed. Between two refreshes the terms lag the
id path's updates by at most one refresh period; evaluation (eval mode, no gradients) always
reads terms computed from the current tables. A step costs a lookup and an index-add per term;
a refresh costs one sparse product per term and hop.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from nasp.distributed import world

from .itemitem import check_memory, itemknn
from .lightgcn import normalized_adjacency, sparse_tensor
from .model import looked_up
from .space import GRAPH_INPUTS

#: neighbours per item and shrinkage of the item-item similarities of ``itemitem``
ITEMITEM_NEIGHBOURS = 50
ITEMITEM_SHRINK = 10.0

#: term name -> (side of its rows, table it reads, operator chain applied right to left); "ui"
#: maps item vectors to users (A's user-item block), "iu" the reverse, "m" the item-item operator
TERMS = {"u1": ("user", "item", ("ui",)), "u2": ("user", "user", ("ui", "iu")),
         "i1": ("item", "user", ("iu",)), "i2": ("item", "item", ("iu", "ui")),
         "uii": ("user", "item", ("m",))}
#: (side, candidate) -> its terms, one gate each
CANDIDATE_TERMS = {("user", "graph1"): ("u1",), ("user", "graph2"): ("u1", "u2"), ("user", "itemitem"): ("uii",),
                   ("item", "graph1"): ("i1",), ("item", "graph2"): ("i1", "i2")}
#: each operator's transpose
TRANSPOSE = {"ui": "iu", "iu": "ui", "m": "mt"}


def graph_candidates(side: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """The candidates of ``names`` that this module computes for ``side``."""
    return tuple(n for n in names if n in GRAPH_INPUTS[side])


def item_item_operator(x: sp.csr_matrix, neighbours: int = ITEMITEM_NEIGHBOURS, shrink: float = ITEMITEM_SHRINK) -> sp.csr_matrix:
    """M: the rows of X S (S ItemKNN's similarities, ``neighbours`` per item) scaled to sum 1
    (a user without such items keeps a zero row). Needs the dense item x item matrices
    ItemKNN needs (``check_memory``: a clear error when they do not fit)."""
    check_memory("itemknn", x.shape[1])
    s = sp.csr_matrix(itemknn(x, neighbours, shrink).numpy())
    m = (x @ s).tocsr().astype(np.float32)
    sums = np.asarray(m.sum(axis=1)).ravel()
    scale = np.zeros_like(sums)
    scale[sums > 0] = 1.0 / sums[sums > 0]
    return (sp.diags(scale) @ m).tocsr()


class GraphInputs(nn.Module):
    """The gated graph and item-item terms of both sides (see the module docstring), for the
    candidates ``candidates`` (side -> names of ``GRAPH_INPUTS``). The training pairs are a
    buffer (``edges``, saved with the model); the operators are rebuilt from them
    (``set_edges``, and after ``load_state_dict``)."""

    def __init__(self, num_users: int, num_items: int, candidates: dict[str, tuple[str, ...]],
                 refreshes: Optional[int]) -> None:
        super().__init__()
        self.num_users, self.num_items = num_users, num_items
        self.refreshes = refreshes  # None: a refresh at every step (exact, and slower)
        self.candidates = {side: graph_candidates(side, names) for side, names in candidates.items()}
        self.gates = nn.ParameterDict({f"{side}_{name}": nn.Parameter(torch.zeros(len(CANDIDATE_TERMS[side, name])))
                                       for side, names in self.candidates.items() for name in names})
        self.terms = sorted({t for side, names in self.candidates.items() for n in names for t in CANDIDATE_TERMS[side, n]})
        self.register_buffer("edges", torch.zeros(2, 0, dtype=torch.long))
        self.operators: dict[str, Tensor] = {}
        self.cache: dict[str, Tensor] = {}
        self._cached_of: Optional[tuple] = None  # the tables' (version, pointer) the cache was computed from
        self.stale = True
        self.pending: dict[str, Tensor] = {}
        self.pending_lookups = 0
        self._built_of: Optional[Tensor] = None  # a copy of the edges the operators were built from
        self.register_load_state_dict_post_hook(lambda module, keys: module._build())

    # the data ---------------------------------------------------------------------------------
    def set_edges(self, users: Tensor, items: Tensor) -> None:
        """The training (user, item) pairs the operators are built from."""
        self.edges = torch.stack([users.long(), items.long()]).to(self.edges.device)
        self._build()

    def _build(self) -> None:
        """The operators of the edges, rebuilt only when the edges changed (a local search
        reloads the same state at every trial)."""
        if self._built_of is not None and self.operators and torch.equal(self._built_of, self.edges.cpu()):
            self.cache, self._cached_of, self.stale = {}, None, True  # the tables may have been loaded too
            return
        users, items = self.edges.cpu().numpy()
        if self.edges.numel() and (users.min() < 0 or items.min() < 0 or users.max() >= self.num_users
                                   or items.max() >= self.num_items):
            raise ValueError("graph edges out of range")
        a = normalized_adjacency(users, items, self.num_users, self.num_items)
        ops = {"ui": a[: self.num_users, self.num_users:], "iu": a[self.num_users:, : self.num_users]}
        if "uii" in self.terms:
            x = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=(self.num_users, self.num_items))
            x.data[:] = 1.0
            ops["m"] = item_item_operator(x)
            ops["mt"] = ops["m"].T.tocsr()
        device = self.edges.device
        self.operators = {name: sparse_tensor(m).to(device) for name, m in ops.items()}
        self.cache, self._cached_of, self.stale = {}, None, True
        self._built_of = self.edges.cpu().clone()

    # the terms --------------------------------------------------------------------------------
    def _propagate(self, chain: tuple[str, ...], x: Tensor) -> Tensor:
        for name in reversed(chain):
            x = torch.sparse.mm(self.operators[name], x)
        return x

    def _compute(self, tables: dict[str, Tensor]) -> None:
        like = tables["user"]
        if any(m.device != like.device or m.dtype != like.dtype for m in self.operators.values()):  # moved or cast (``.to``)
            self.operators = {name: m.to(device=like.device, dtype=like.dtype) for name, m in self.operators.items()}
        with torch.no_grad():
            self.cache = {t: self._propagate(TERMS[t][2], tables[TERMS[t][1]].detach()) for t in self.terms}
        self._cached_of = tuple((w._version, w.data_ptr()) for w in tables.values())
        self.stale = False

    def terms_for(self, tables: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every term's rows: in training from the cache of the last refresh; in evaluation
        (eval mode without gradients) computed from the tables as they are now."""
        if self.training or torch.is_grad_enabled():
            if self.stale or not self.cache:
                self._compute(tables)
        elif self._cached_of != tuple((w._version, w.data_ptr()) for w in tables.values()) or not self.cache:
            self._compute(tables)
            self.stale = True  # computed outside a refresh: training recomputes at its next step
        return self.cache

    def forward(self, side: str, name: str, ids: Tensor, user_table: Tensor, item_table: Tensor) -> Tensor:
        """The gated terms of candidate ``name`` of ``side`` for ``ids`` (to add to their id
        embeddings)."""
        tables = {"user": user_table, "item": item_table}
        gates = self.gates[f"{side}_{name}"]
        names = CANDIDATE_TERMS[side, name]
        cache = self.terms_for(tables)
        if torch.is_grad_enabled() and (user_table.requires_grad or item_table.requires_grad):
            return _CachedTerms.apply(ids, gates, user_table, item_table, self, names)
        return sum(g * cache[t].index_select(0, ids) for g, t in zip(gates, names))

    # the pending gradient ---------------------------------------------------------------------
    @property
    def period(self) -> int:
        """Looked-up rows between two refreshes (training pairs / refreshes)."""
        if self.refreshes is None:
            return 1
        return max(1, -(-self.edges.shape[1] // self.refreshes))

    def _add(self, term: str, ids: Tensor, grad_rows: Tensor) -> None:
        rows = self.num_users if TERMS[term][0] == "user" else self.num_items
        buf = self.pending.get(term)
        if buf is None or buf.shape != (rows, grad_rows.shape[1]) or buf.dtype != grad_rows.dtype:
            buf = self.pending[term] = grad_rows.new_zeros(rows, grad_rows.shape[1])
        buf.index_add_(0, ids, grad_rows)

    def flush(self, like: dict[str, Tensor]) -> dict[str, Tensor]:
        """The tables' gradient of everything pending (then cleared; the cache goes stale)."""
        grads = {side: torch.zeros_like(w) for side, w in like.items()}
        for term, buf in self.pending.items():
            _, table, chain = TERMS[term]
            grads[table] += self._propagate(tuple(TRANSPOSE[o] for o in reversed(chain)), buf)
            buf.zero_()
        self.pending_lookups, self.stale = 0, True
        return grads

    def pending_state(self) -> dict:
        """The pending gradient and the looked-up rows counted, for a checkpoint: every rank's
        part stacked in rank order in a data-parallel run (as ``HistoryEncoder.pending_state``)."""
        if not self.pending:
            return {}
        ranks = world()
        return {"lookups": self.pending_lookups, "terms": {t: ranks.gather(b) for t, b in sorted(self.pending.items())}}

    def load_pending_state(self, state: dict) -> None:
        """Restore ``pending_state``: this rank's part."""
        rank = world().rank
        self.pending_lookups = int(state.get("lookups", 0))
        self.pending = {t: b[rank].clone() for t, b in state.get("terms", {}).items()}
        self.stale = True


class _CachedTerms(torch.autograd.Function):
    """Gated cached terms of ``ids``; the gates' gradient at once, the tables' at a refresh."""

    @staticmethod
    def forward(ctx, ids: Tensor, gates: Tensor, user_table: Tensor, item_table: Tensor, module: GraphInputs,
                names: tuple[str, ...]) -> Tensor:
        ctx.module, ctx.names = module, names
        ctx.counts = looked_up(ids)
        rows = [module.cache[t].index_select(0, ids) for t in names]
        ctx.save_for_backward(ids, gates, *rows)
        ctx.tables = (user_table, item_table)
        return sum(g * r for g, r in zip(gates, rows))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        ids, gates, *rows = ctx.saved_tensors
        module = ctx.module
        looked_up, share = ctx.counts
        grad_gates = torch.stack([(r * grad).sum() for r in rows]) if ctx.needs_input_grad[1] else None
        for g, t in zip(gates.detach(), ctx.names):
            module._add(t, ids, grad * (g * share))
        module.pending_lookups += looked_up
        grad_user = grad_item = None
        if module.pending_lookups >= module.period:
            user_table, item_table = ctx.tables
            grads = module.flush({"user": user_table, "item": item_table})
            grad_user, grad_item = grads["user"] / share, grads["item"] / share
        return None, grad_gates, grad_user, grad_item, None, None
