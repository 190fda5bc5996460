"""The SIF network: embeddings, biases, element-wise MLPs and a mix of interaction ops."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from nasp import SearchNetwork, mix, plan
from nasp.distributed import world
from nasp.loop import Hook

from .space import (BROADCAST_ELEMENTS, INTERACTION_FUNCTIONS, MLP_FORMS, SEARCH_SPACE, ElementwiseMLP, check_head, check_mlp,
                    inherit)


#: how many times per epoch (per training lookups of as many rows as the history holds) a
#: ``HistoryEncoder`` pushes the gradient its cached sums gathered into its factors; None: the
#: exact path at every step (see ``HistoryEncoder``)
HISTORY_REFRESHES = 64


def group_rows(keys: Tensor, values: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """(indptr, values) of the pairs grouped by key (CSR; file order within a group):
    ``values[indptr[k]:indptr[k + 1]]`` are key k's."""
    order = torch.argsort(keys, stable=True)
    counts = torch.bincount(keys, minlength=groups)
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)]), values.index_select(0, order)


#: evaluation (no gradients) computes every row's sums once, and reads later chunks from them,
#: when a chunk's histories hold at least 1 / CACHE_FOR_EVALUATION of all the history: a full
#: evaluation pass then costs one pass over the history instead of one per chunk, while scoring a
#: few users (``recommend``) still gathers only their histories
CACHE_FOR_EVALUATION = 4


def looked_up(ids: Tensor) -> tuple[int, float]:
    """(rows a step looked up, this process's share of them): every rank's rows in a
    data-parallel run (one scalar all-reduce), so that all ranks refresh a delayed gradient at
    the same step; the share (1 in one process) weighs this rank's gradient as the step's
    average does."""
    ranks = world()
    if not ranks.parallel:
        return ids.numel(), 1.0
    every = int(ranks.sum(torch.tensor([ids.numel()], dtype=torch.long, device=ids.device)).item())
    return every, ids.numel() / max(1, every)


class HistoryEncoder(nn.Module):
    """The history (SVD++-style) encoding of one side: for a row x (a user, or an item),
    |N(x)|^-1/2 * sum_{j in N(x)} y_j, where N(x) are the other side's ids that x interacted
    with in training (``set_history``) and y (``factors``) a table of the other side's factors
    (Koren, KDD 2008, for users; the same on the item side, with the users who rated an item).
    A row without history encodes to zeros.

    Cached sums (``refreshes`` not None, the default ``HISTORY_REFRESHES``): a training forward
    (gradients on, factors trainable) reads each row's encoding from a buffer of all rows'
    sums, recomputed whenever the factors changed (their version counter), instead of
    gathering the whole history of every row of the batch; its backward adds the gradient of
    the encodings to a buffer, and ``regularization``'s to another, and ``refreshes`` times per
    epoch (once the backwards have seen len(history) / refreshes looked-up rows) hands the
    factors the gradient of everything gathered since the last time (A^T G for the normalised
    history matrix A, plus the L2 term's), otherwise no gradient: y moves ``refreshes`` times an
    epoch, on the gradient of the steps in between, and the sums stay exact. ``None``: every
    step gathers and differentiates the histories exactly. Evaluation (no gradients) reads the
    same sums: computed for every row when a chunk gathers much of the history
    (``CACHE_FOR_EVALUATION``), then kept while the factors stand still; a small chunk (a few
    users' recommendations) gathers its rows' histories alone. In a data-parallel run the
    looked-up rows are counted over every rank (one scalar all-reduce per training forward), so
    all ranks refresh at the same step, as one process on the whole batch does; each rank's part
    is weighted by its share of each step."""

    def __init__(self, num_rows: int, num_other: int, dim: int, refreshes: Optional[int] = HISTORY_REFRESHES) -> None:
        super().__init__()
        if refreshes is not None and refreshes < 1:
            raise ValueError(f"refreshes must be at least 1 or None, got {refreshes}")
        self.refreshes = refreshes
        self.factors = nn.Embedding(num_other, dim)
        self.register_buffer("indptr", torch.zeros(num_rows + 1, dtype=torch.long))
        self.register_buffer("neighbours", torch.zeros(0, dtype=torch.long))
        # the cache: derived from the factors and the history, never saved
        self.register_buffer("sums", torch.zeros(0, dim), persistent=False)
        self.register_buffer("pending_rows", torch.zeros(0, dim), persistent=False)
        self.register_buffer("pending_factors", torch.zeros(0, dim), persistent=False)
        # the history transposed (each other id's rows), for a refresh's A^T G; built when first needed
        self.register_buffer("t_indptr", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("t_rows", torch.zeros(0, dtype=torch.long), persistent=False)
        self._transposed_of: Optional[tuple] = None
        self._cached_version: Optional[tuple] = None  # (factors' version, data pointers) of ``sums``
        self.pending_lookups = 0
        self.step_share = 1.0  # this rank's share of the current step's looked-up rows (``_count``)
        self.reset_parameters()
        self.register_load_state_dict_post_hook(lambda module, keys: module.check_history())

    def check_history(self) -> None:
        """A ValueError unless ``indptr``/``neighbours`` form a history of this encoder's rows
        (checked after every ``load_state_dict``: a tampered file would index out of range)."""
        indptr, neighbours = self.indptr, self.neighbours
        if indptr.dtype != torch.long or neighbours.dtype != torch.long:
            raise ValueError("history buffers are not int64")
        if indptr.numel() == 0 or int(indptr[0]) != 0 or int(indptr[-1]) != neighbours.numel() \
                or bool((indptr[1:] < indptr[:-1]).any()):
            raise ValueError("history offsets out of range")
        if neighbours.numel() and (int(neighbours.min()) < 0 or int(neighbours.max()) >= self.factors.num_embeddings):
            raise ValueError("history ids out of range")
        self._cached_version = self._transposed_of = None

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.factors.weight)  # starts as the plain id embedding

    def set_history(self, rows: Tensor, others: Tensor) -> None:
        """N(x) from the (row, other) pairs of the training interactions."""
        indptr, neighbours = group_rows(rows, others.long(), self.indptr.numel() - 1)
        self.indptr = indptr.to(self.indptr.device)
        self.neighbours = neighbours.to(self.indptr.device)
        self._cached_version = self._transposed_of = None

    def _gather(self, ids: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(unique ids, inverse, history lengths, bag offsets, flat history positions) of ``ids``."""
        uniq, inverse = torch.unique(ids, return_inverse=True)
        start, end = self.indptr.index_select(0, uniq), self.indptr.index_select(0, uniq + 1)
        lengths = end - start
        offsets = torch.cumsum(lengths, 0) - lengths
        total = int(lengths.sum())
        flat = torch.repeat_interleave(start - offsets, lengths, output_size=total) + torch.arange(total, device=ids.device)
        return uniq, inverse, lengths, offsets, flat

    def forward(self, ids: Tensor) -> Tensor:
        if self.refreshes is not None and torch.is_grad_enabled():
            if self.factors.weight.requires_grad:
                return _CachedHistory.apply(ids, self.factors.weight, self)
            return self.cached_sums().index_select(0, ids)  # frozen factors (an architecture step): the same values
        if not torch.is_grad_enabled() and self._cache_is_current():  # evaluation after the first chunk
            return self.sums.index_select(0, ids)
        uniq, inverse, lengths, offsets, flat = self._gather(ids)
        if not torch.is_grad_enabled() and flat.numel() * CACHE_FOR_EVALUATION >= self.neighbours.numel():
            # a large evaluation chunk gathers much of the history: every row's sums cost little
            # more and serve the chunks after it (the same values)
            return self.cached_sums().index_select(0, ids)
        sums = nn.functional.embedding_bag(self.neighbours.index_select(0, flat), self.factors.weight, offsets, mode="sum")
        return (sums * lengths.clamp_min(1).to(sums.dtype).rsqrt().unsqueeze(1)).index_select(0, inverse)

    def regularization(self, others: Tensor) -> Tensor:
        """Sum of squared factors of ``others`` (each penalised as often as it occurs)."""
        if self.refreshes is not None and torch.is_grad_enabled() and self.factors.weight.requires_grad:
            return _CachedSquares.apply(others, self.factors.weight, self)
        return self.factors(others).pow(2).sum()

    # the cache ----------------------------------------------------------------------------------
    def _row_scale(self) -> Tensor:
        """|N(x)|^-1/2 per row (1 for rows without history, whose sums are zero)."""
        return (self.indptr[1:] - self.indptr[:-1]).clamp_min(1).to(self.factors.weight.dtype).rsqrt()

    def _cache_key(self) -> tuple:
        w = self.factors.weight
        return (w._version, w.data_ptr(), *self._history_key())

    def _cache_is_current(self) -> bool:
        return self._cached_version == self._cache_key() and self.sums.shape[0] == self.indptr.numel() - 1

    def cached_sums(self) -> Tensor:
        """Every row's encoding, recomputed when the factors (or the history) changed."""
        if not self._cache_is_current():
            with torch.no_grad():
                sums = nn.functional.embedding_bag(self.neighbours, self.factors.weight, self.indptr[:-1], mode="sum")
                self.sums = sums.mul_(self._row_scale().unsqueeze(1))  # in place: no second table-sized buffer
            self._cached_version = self._cache_key()
        return self.sums

    def _history_key(self) -> tuple:
        """Identifies the history tensors' contents: a new tensor, or one changed in place
        (``load_state_dict`` copies into them), gives a new key."""
        return tuple((t.data_ptr(), t._version, t.numel()) for t in (self.neighbours, self.indptr))

    @property
    def period(self) -> int:
        """Looked-up rows between two refreshes of the cached sums (len(history) / refreshes)."""
        return max(1, -(-self.neighbours.numel() // self.refreshes))

    def _transposed(self) -> tuple[Tensor, Tensor]:
        """(indptr, rows) of the transposed history: for each other id, the rows that hold it."""
        key = self._history_key()
        if self._transposed_of != key or self.t_indptr.numel() != self.factors.num_embeddings + 1:
            counts = self.indptr[1:] - self.indptr[:-1]
            rows = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
            self.t_indptr, self.t_rows = group_rows(self.neighbours, rows, self.factors.num_embeddings)
            self._transposed_of = key
        return self.t_indptr, self.t_rows

    def _pending(self, name: str, rows: int, like: Tensor) -> Tensor:
        buf = getattr(self, name)
        if buf.shape != (rows, like.shape[1]) or buf.device != like.device or buf.dtype != like.dtype:
            buf = like.new_zeros(rows, like.shape[1])
            setattr(self, name, buf)
        return buf

    def _count(self, ids: Tensor) -> tuple[int, float]:
        """``looked_up(ids)``, the share kept for the step's ``regularization``."""
        every, self.step_share = looked_up(ids)
        return every, self.step_share

    def _flush(self, grad_rows: Tensor, ids: Tensor, looked_up: int, share: float) -> Optional[Tensor]:
        """Add the encodings' gradient ``grad_rows`` (of rows ``ids``), times this rank's
        ``share`` of the step, to the pending one; at a refresh, the factors' gradient of
        everything pending (then cleared; divided by this step's share, which the gradient
        average multiplies back: the ranks' pending gradients are added up), else None."""
        w = self.factors.weight
        pending = self._pending("pending_rows", self.indptr.numel() - 1, w)
        pending.index_add_(0, ids, grad_rows.to(w.dtype) * share)
        self.pending_lookups += looked_up
        if self.pending_lookups < self.period:
            return None
        self.pending_lookups = 0
        # A^T G: each factor's gradient sums the scaled pending gradients of the rows whose history
        # holds it, one bag per factor (no interactions x dim intermediate)
        t_indptr, t_rows = self._transposed()
        # scaled in place (cleared right after): a table-sized temporary is mapped afresh by the
        # host allocator each time (40 ms of page faults a refresh at the 20M shape)
        grad = nn.functional.embedding_bag(t_rows, pending.mul_(self._row_scale().unsqueeze(1)), t_indptr[:-1], mode="sum")
        pending.zero_()
        squares = self._pending("pending_factors", w.shape[0], w)
        grad += squares
        squares.zero_()
        return grad / share

    def pending_state(self) -> dict:
        """What the cache holds between two refreshes (the gradient gathered so far and the
        looked-up rows counted, this rank's share of the last step's rows), for a checkpoint: a
        resumed run then refreshes at the same step with the same gradient as an uninterrupted
        one. Only the share when nothing was gathered (the same on every rank: each gets rows at
        every step). In a data-parallel run every
        rank's pending gradient is kept, stacked in rank order (a collective: every rank calls
        this), and each rank takes its own back (a resume runs on as many processes)."""
        if self.refreshes is None:
            return {}
        ranks = world()
        # this rank's share of the last step that encoded: the regularization of a step that does
        # not encode (a path without this side's history) weighs its gradient by it
        out = {"share": ranks.gather(torch.tensor([self.step_share], dtype=torch.float64, device=self.factors.weight.device))}
        if not (self.pending_rows.numel() or self.pending_factors.numel()):
            return out
        return {**out, "lookups": self.pending_lookups,  # a buffer not allocated yet is not allocated on any rank: left out
                **{key: ranks.gather(buf) for key, buf in (("rows", self.pending_rows), ("factors", self.pending_factors))
                   if buf.numel()}}

    def load_pending_state(self, state: dict) -> None:
        """Restore ``pending_state`` (an empty state: nothing pending): this rank's part."""
        self.pending_lookups = int(state.get("lookups", 0))
        w, rank = self.factors.weight, world().rank
        self.step_share = float(state["share"][rank]) if "share" in state else 1.0
        self.pending_rows = state["rows"][rank].to(w) if "rows" in state else w.new_zeros(0, w.shape[1])
        self.pending_factors = state["factors"][rank].to(w) if "factors" in state else w.new_zeros(0, w.shape[1])


class PendingHistory(Hook):
    """A run-loop hook that checkpoints every history encoder's ``pending_state`` (the cached
    sums' gradient not yet handed to the factors), so that a killed run resumes exactly. A
    ``SIFNetwork`` brings it to every run loop itself (``run_hooks``)."""

    def __init__(self, net: nn.Module) -> None:
        # the history encoders, and any other module with a pending gradient (``sif.graph.GraphInputs``)
        self.encoders = {name: m for name, m in net.named_modules() if hasattr(m, "pending_state")}

    def state_dict(self) -> dict:
        return {name: state for name, enc in self.encoders.items() if (state := enc.pending_state())}

    def load_state_dict(self, state: dict) -> None:
        for name, enc in self.encoders.items():
            enc.load_pending_state(state.get(name, {}))


class _CachedHistory(torch.autograd.Function):
    """The encodings of ``ids`` from the encoder's cached sums; backward: ``HistoryEncoder._flush``."""

    @staticmethod
    def forward(ctx, ids: Tensor, weight: Tensor, encoder: HistoryEncoder) -> Tensor:
        ctx.encoder = encoder
        ctx.counts = encoder._count(ids)
        ctx.save_for_backward(ids)
        return encoder.cached_sums().index_select(0, ids)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        (ids,) = ctx.saved_tensors
        return None, ctx.encoder._flush(grad, ids, *ctx.counts), None


class _CachedSquares(torch.autograd.Function):
    """Sum of squared factors of ``others``; its gradient waits in the encoder's pending buffer."""

    @staticmethod
    def forward(ctx, others: Tensor, weight: Tensor, encoder: HistoryEncoder) -> Tensor:
        ctx.encoder = encoder
        ctx.share = encoder.step_share  # of this step's encodings (the loss computes them first)
        ctx.save_for_backward(others, weight)
        return weight.index_select(0, others).pow(2).sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        others, weight = ctx.saved_tensors
        pending = ctx.encoder._pending("pending_factors", weight.shape[0], weight)
        pending.index_add_(0, others, 2 * grad * weight.index_select(0, others) * ctx.share)
        return None, None, None


def with_choice(values: Sequence[float], names: Sequence[str], chosen: str) -> Tensor:
    """A (1 x len(names)) alpha row from logged values whose arg-max is ``chosen``: the logged
    name is what the epoch trained and validated, while its values are rounded in the log, where
    two candidates can tie (or their order flip) once they are close."""
    row = torch.tensor([list(values)], dtype=torch.float64)
    k = list(names).index(chosen)
    others = torch.cat([row[0, :k], row[0, k + 1:]])
    if others.numel() and row[0, k] <= others.max():
        row[0, k] = others.max() + 1e-6
    return row.float()


MAX_DIM = 65_536
"""The largest embedding dimension (``--dim``, ``model.dim`` of arch.json); the memory the tables
need is checked too, before they are allocated (``pipeline.build_network``)."""


@dataclass
class ModelConfig:
    """Shape of a SIF model (saved in arch.json and model checkpoints)."""

    num_users: int
    num_items: int
    dim: int = 64
    ops: tuple[str, ...] = SEARCH_SPACE
    elementwise: bool = True
    mlp_hidden: int = 8
    mlp: str = "residual"
    biases: bool = True
    implicit: bool = False
    head: str = "box"
    global_mean: float = 0.0
    #: ``HistoryEncoder.refreshes`` of the implicit term (None: exact at every step)
    history_refreshes: Optional[int] = HISTORY_REFRESHES
    #: the paper's training of the searched element-wise MLPs: with the architecture, on validation
    #: batches (``--mlp-on-valid``). Off: they are weights, trained on training data only, so no
    #: validation row ever enters a trained weight
    mlp_on_valid: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ops"] = list(self.ops)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """The config ``to_dict`` wrote (a key it lacks takes the field's default)."""
        d = dict(d)
        d["ops"] = tuple(d["ops"])
        return cls(**d)



#: user/item embedding and bias tables with at least this many rows get sparse gradients
#: (``nn.Embedding(sparse=True)``): a step then allocates, clips and applies the batch's rows
#: instead of a dense gradient of the whole table. 2,048 rows is 4 batches' rows at the default
#: batch size (512): measured per step, sparse gradients were 0.95-0.99x on ml-100k's tables
#: (943 and 1,682 rows, which stay dense), 1.05x on ml-1m's and 2.7-3.3x on ml-20m's (docs/sif.md).
#: The implicit table stays dense: a batch's histories cover most of its rows.
SPARSE_GRAD_MIN_ROWS = 2048


def table(rows: int, dim: int) -> nn.Embedding:
    """An embedding table, with sparse gradients from ``SPARSE_GRAD_MIN_ROWS`` rows on."""
    return nn.Embedding(rows, dim, sparse=rows >= SPARSE_GRAD_MIN_ROWS)


def dense_gradients_off_cpu(net: nn.Module, device: torch.device) -> None:
    """Off the CPU every table takes dense gradients: on a GPU, clipping and applying a sparse
    gradient coalesces it, which makes the host wait for the device at every step, while a dense
    update of a whole table is a small share of a GPU's memory bandwidth (the same Adagrad update:
    rows outside the batch get a zero gradient, which changes neither them nor their sums)."""
    if device.type == "cpu":
        return
    for module in net.modules():
        if isinstance(module, nn.Embedding):
            module.sparse = False


#: buffers that describe the training data, not the learned model: a network built for other
#: splits (the refit on train+valid) keeps its own when it loads searched weights
DATA_BUFFERS = ("known_users", "known_items", "rating_range", "user_history.indptr", "user_history.neighbours",
                "item_history.indptr", "item_history.neighbours", "graph.edges")


class SIFNetwork(SearchNetwork):
    """prediction = mu + b_u + b_i + sum_m alpha_m * w_m . op_m(g_u(u), g_v(v)).

    ``alpha`` (1 x len(ops)) is the architecture; everything else is a weight, the element-wise
    MLPs g_u, g_v included, unless ``mlp_on_valid`` searches them with alpha on validation data
    as the paper does (``arch_extra_parameters``).
    With ``implicit`` the user vector is SVD++'s (Koren, KDD 2008):
    u = p_u + |N(u)|^-1/2 * sum_{j in N(u)} y_j, N(u) the items u rated in training
    (``set_history``). Users/items flagged unknown (never seen in training) get only the
    biases that exist.
    """

    #: the default model a local search starts from: row name -> candidate (``search_rows``)
    default_choices = {"op": "multiply"}

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        for name in config.ops:
            INTERACTION_FUNCTIONS.get(name)  # unknown names raise a clear NaspError
        check_head(config.head)
        check_mlp(config.mlp)
        self.config = config
        k = config.dim
        self.user_emb = table(config.num_users, k)
        self.item_emb = table(config.num_items, k)
        self.user_bias = table(config.num_users, 1)
        self.item_bias = table(config.num_items, 1)
        self.global_bias = nn.Parameter(torch.tensor(float(config.global_mean)))
        self.ops = nn.ModuleList(self._op(name, k, config.head) for name in config.ops)
        residual = MLP_FORMS[config.mlp]
        self.mlp_u = ElementwiseMLP(config.mlp_hidden, residual) if config.elementwise else None
        self.mlp_v = ElementwiseMLP(config.mlp_hidden, residual) if config.elementwise else None
        self.alpha = nn.Parameter(0.5 + 1e-3 * torch.randn(1, len(config.ops)))
        self.register_buffer("known_users", torch.ones(config.num_users, dtype=torch.bool))
        self.register_buffer("known_items", torch.ones(config.num_items, dtype=torch.bool))
        self.register_buffer("rating_range", torch.tensor([-float("inf"), float("inf")]))
        self.user_history = (HistoryEncoder(config.num_users, config.num_items, k, config.history_refreshes)
                             if config.implicit else None)
        self.reset_embeddings()
        if len(config.ops) == 1:
            with torch.no_grad():
                self.alpha.fill_(1.0)

    def run_hooks(self) -> list[Hook]:
        """The checkpointing of the history encoders' pending gradient (``PendingHistory``)."""
        return [PendingHistory(self)]

    @staticmethod
    def _op(name: str, dim: int, head: str) -> nn.Module:
        op = INTERACTION_FUNCTIONS.get(name)
        return op(dim, head) if op.uses_head else op(dim)

    def reset_embeddings(self) -> None:
        nn.init.normal_(self.user_emb.weight, std=0.01)
        nn.init.normal_(self.item_emb.weight, std=0.01)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        for history in self.histories():
            history.reset_parameters()  # starts as plain MF
        with torch.no_grad():
            self.global_bias.fill_(float(self.config.global_mean))

    def reset_weights(self) -> None:
        self.reset_embeddings()
        for op in self.ops:
            if hasattr(op, "reset_parameters"):
                op.reset_parameters()
            for m in op.modules():
                if m is not op and hasattr(m, "reset_parameters"):
                    m.reset_parameters()

    def histories(self) -> list[HistoryEncoder]:
        """The history encoders the model has (the user side's with ``implicit``)."""
        return [h for h in (getattr(self, "user_history", None), getattr(self, "item_history", None)) if h is not None]

    def set_history(self, users: Tensor, items: Tensor) -> None:
        """N(u) (and N(i)) for the history encodings: the (user, item) pairs of the training data."""
        if getattr(self, "user_history", None) is not None:
            self.user_history.set_history(users, items)
        if getattr(self, "item_history", None) is not None:
            self.item_history.set_history(items, users)

    def load_model_state(self, state: dict) -> None:
        """``load_state_dict`` for a saved model, whose histories may differ in length from this
        network's (a network built for other splits, or with an empty history)."""
        for history, prefix in ((getattr(self, "user_history", None), "user_history."),
                                (getattr(self, "item_history", None), "item_history.")):
            if history is None:
                state = {k: v for k, v in state.items() if not k.startswith(prefix)}
                continue
            history.neighbours = torch.empty_like(state[prefix + "neighbours"])
        self.load_state_dict(state)

    def implicit(self, users: Tensor) -> Tensor:
        """|N(u)|^-1/2 * sum of y_j over the items each user rated in training."""
        return self.user_history(users)

    # the SearchNetwork contract ---------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def arch_extra_parameters(self) -> list[nn.Parameter]:
        """The element-wise MLPs with ``mlp_on_valid`` (the paper's), else none: they are weights."""
        return self.exported_weights() if self.config.mlp_on_valid else []

    def exported_weights(self) -> list[nn.Parameter]:
        """The element-wise MLPs (saved in arch.json with the chosen op)."""
        if self.mlp_u is None:
            return []
        return list(self.mlp_u.parameters()) + list(self.mlp_v.parameters())

    def derive(self, alphas: Optional[Sequence[Tensor]] = None) -> dict:
        alpha = (alphas or self.arch_parameters())[0].detach()
        probs = torch.softmax(alpha.float(), dim=-1)[0]
        best = int(alpha[0].argmax())
        return {
            "interaction": self.config.ops[best],
            "alpha": {name: round(float(a), 6) for name, a in zip(self.config.ops, alpha[0])},
            "probabilities": {name: round(float(p), 6) for name, p in zip(self.config.ops, probs)},
        }

    def export(self, discrete: Sequence[Tensor], continuous: Optional[Sequence[Tensor]] = None) -> dict:
        """The interaction a projection holds, reported with the continuous values it came from
        (when given) so that metrics rows keep the alpha trajectories."""
        out = self.derive(continuous if continuous is not None else discrete)
        out["interaction"] = self.config.ops[int(discrete[0].detach()[0].argmax())]
        return out

    def search_rows(self) -> dict[str, tuple[str, ...]]:
        """Row name -> candidates, in the order of ``arch_parameters``."""
        return {"op": tuple(self.config.ops)}

    def default_architecture(self) -> list[Tensor]:
        """One-hot rows of ``default_choices`` (a row without its default: its first candidate)."""
        out = []
        for (row, names), a in zip(self.search_rows().items(), self.arch_parameters()):
            value = torch.zeros_like(a.detach())
            value[0, names.index(self.default_choices[row]) if self.default_choices.get(row) in names else 0] = 1
            out.append(value)
        return out

    def swap_in(self, architecture: Sequence[Tensor], tensor: int, row: int,
                column: int) -> list[tuple[nn.Parameter, nn.Parameter]]:
        """A new op takes the output vector of the op it replaces (``inherit``): ops compute
        different functions of the same vectors, so none preserves the function."""
        return inherit(self.ops[int(architecture[0][0].argmax())], self.ops[column])

    def logged_alphas(self, logged: dict) -> list[Tensor]:
        """The alphas of a metrics row's ``architecture``, whose arg-max is its logged interaction."""
        ops = self.config.ops
        return [with_choice([float(logged["alpha"][name]) for name in ops], ops, logged["interaction"])]

    # forward ----------------------------------------------------------------------------------
    def embed(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        u = self.user_emb(users)
        if self.user_history is not None:
            u = u + self.user_history(users)
        return u, self.item_emb(items)

    def bias(self, users: Tensor, items: Tensor) -> Tensor:
        out = self.global_bias.expand(users.shape[0])
        if self.config.biases:
            out = out + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1)
        return out

    def elementwise(self, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """The element-wise MLPs g_u(u), g_v(v) (the identity without them)."""
        p = self.mlp_u(u) if self.mlp_u is not None else u
        q = self.mlp_v(v) if self.mlp_v is not None else v
        return p, q

    def interaction(self, u: Tensor, v: Tensor) -> Tensor:
        p, q = self.elementwise(u, v)
        pl = plan(self.alpha, self.mixing)
        out = mix([lambda op=op: op(p, q) for op in self.ops], pl, 0)
        return out if out is not None else u.new_zeros(u.shape[0])

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """Raw predictions for known (user, item) index pairs (training path)."""
        u, v = self.embed(users, items)
        return self.bias(users, items) + self.interaction(u, v)

    def score_all(self, users: Tensor, items: Optional[Tensor] = None,
                  max_elements: int = BROADCAST_ELEMENTS) -> Tensor:
        """Raw scores [len(users), len(items)] of every (user, item) pair, equal to
        ``forward(users[i], items[j])`` (every item when ``items`` is None), under the current
        mixing rule as ``forward``; each user's and item's vector goes through its element-wise
        MLP once, and each op scores the block with ``score_matrix`` (``max_elements``: the
        broadcast ops' chunk size). For known ids (ranking); ``predict``'s fallbacks for unknown
        ids are not applied."""
        if items is None:
            items = torch.arange(self.config.num_items, device=users.device)
        p, q = self.elementwise(*self.embed(users, items))  # [U, k], [I, k]
        pl = plan(self.alpha, self.mixing)
        out = mix([lambda op=op: op.score_matrix(p, q, max_elements) for op in self.ops], pl, 0)
        return self.with_biases(out if out is not None else p.new_zeros(p.shape[0], q.shape[0]), users, items)

    def with_biases(self, scores: Tensor, users: Tensor, items: Tensor) -> Tensor:
        """[U, I] interaction scores plus the global, user and item biases."""
        scores = scores + self.global_bias
        if self.config.biases:
            scores = scores + self.user_bias(users) + self.item_bias(items).T
        return scores

    @torch.no_grad()
    def predict(self, users: Tensor, items: Tensor) -> Tensor:
        """Predictions in stars for any pairs: ``-1``/unseen ids fall back to the biases that
        exist, and the result is clipped to the training rating range."""
        valid_u, valid_i = users >= 0, items >= 0
        uu, ii = users.clamp_min(0), items.clamp_min(0)
        known = valid_u & valid_i & self.known_users[uu] & self.known_items[ii]
        u, v = self.embed(uu, ii)
        out = self.global_bias.expand(users.shape[0]).clone()
        if self.config.biases:
            out = out + torch.where(valid_u, self.user_bias(uu).squeeze(-1), torch.zeros_like(out))
            out = out + torch.where(valid_i, self.item_bias(ii).squeeze(-1), torch.zeros_like(out))
        out = out + torch.where(known, self.interaction(u, v), torch.zeros_like(out))
        return out.clamp(float(self.rating_range[0]), float(self.rating_range[1]))

    def forward_and_regularization(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        """``(forward(users, items), regularization(users, items))`` from one lookup of the
        batch's embedding and bias rows (the training loss's path: same values, half the gathers
        and one embedding backward per table). A subclass that changes how the batch is embedded,
        scored or regularised gets the two calls."""
        cls = type(self)
        if any(getattr(cls, name) is not getattr(SIFNetwork, name) for name in ("forward", "embed", "bias", "regularization")):
            return self(users, items), self.regularization(users, items)
        p, q = self.user_emb(users), self.item_emb(items)
        u = p + self.user_history(users) if self.user_history is not None else p
        reg = p.pow(2).sum() + q.pow(2).sum()
        out = self.global_bias.expand(users.shape[0])
        if self.config.biases:
            bu, bi = self.user_bias(users).squeeze(-1), self.item_bias(items).squeeze(-1)
            out = out + bu + bi
            reg = reg + bu.pow(2).sum() + bi.pow(2).sum()
        return out + self.interaction(u, q), reg / users.shape[0]

    def regularization(self, users: Tensor, items: Tensor) -> Tensor:
        """Sum of squared embedding and bias entries of the batch rows (divided by batch size)."""
        reg = self.user_emb(users).pow(2).sum() + self.item_emb(items).pow(2).sum()
        if self.config.biases:
            reg = reg + self.user_bias(users).pow(2).sum() + self.item_bias(items).pow(2).sum()
        return reg / users.shape[0]

    def implicit_regularization(self, users: Tensor, items: Tensor) -> Tensor:
        """Sum of squared implicit factors y_i of the batch's items (divided by batch size):
        each item's y is penalised in proportion to how often it is rated, like its q."""
        if self.user_history is None:
            return self.user_emb.weight.new_zeros(())
        return self.user_history.regularization(items) / users.shape[0]
