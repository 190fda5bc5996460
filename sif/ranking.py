"""Top-K ranking on implicit feedback (REFERENCE §4): exact negative sampling, the BPR and BCE
losses on scores, and full-ranking metrics with RecBole's definitions (binary relevance).

Users and items are dense indices; a set of (user, item) pairs is a ``Pairs`` tuple of two
equally long index tensors. Nothing here keeps global state or picks a device: every tensor
stays on the device of the inputs.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from nasp.errors import NaspError
from nasp.registry import Registry

#: (users, items): two equally long tensors of dense indices, one (user, item) pair per position
Pairs = tuple[Tensor, Tensor]

#: a loss on scores: (positive scores [B], negative scores [B, N]) -> scalar
RankingLoss = Callable[[Tensor, Tensor], Tensor]

#: a per-user metric on the top K: (hits [U, K] bool, held-out counts [U], all >= 1) -> [U] float64
RankingMetric = Callable[[Tensor, Tensor], Tensor]

LOSSES: Registry[RankingLoss] = Registry("ranking loss")
RANKING_METRICS: Registry[RankingMetric] = Registry("ranking metric")


def pair_keys(users: Tensor, items: Tensor, num_items: int) -> Tensor:
    """The sorted unique keys ``user * num_items + item`` of some pairs (duplicates once)."""
    if users.shape != items.shape or users.dim() != 1:
        raise ValueError(f"users and items must be 1-d and equally long, got {tuple(users.shape)} and {tuple(items.shape)}")
    return torch.unique(users.long() * num_items + items.long())


# negative sampling ------------------------------------------------------------------------------
class NegativeSampler:
    """Draws, for each given user, items uniformly among those the user has *not* interacted with.

    Built from the positive pairs to exclude (the training interactions; or more, e.g. train +
    valid). Exact and vectorised, no rejection: user u has the sorted positives p_0 < ... <
    p_{n_u - 1}; d_k = p_k - k counts the non-positives below p_k, so the r-th non-positive item
    (0-based) is r + #{k : d_k <= r}. ``sample`` draws r uniformly in [0, num_items - n_u) and
    counts those k with one ``torch.searchsorted`` over the global sorted keys
    u * num_items + d_k. Duplicate pairs count once. The tensors live on the device of the
    pairs given; ``to(device)`` gives a copy elsewhere.
    """

    def __init__(self, users: Tensor, items: Tensor, num_items: int) -> None:
        if num_items < 1:
            raise ValueError(f"num_items must be positive, got {num_items}")
        if items.numel() and (int(items.min()) < 0 or int(items.max()) >= num_items or int(users.min()) < 0):
            raise ValueError(f"positive pairs must hold users >= 0 and items in [0, {num_items})")
        self.num_items = num_items
        keys = pair_keys(users, items, num_items)
        pair_users = keys // num_items
        rank = torch.arange(keys.numel(), device=keys.device) - torch.searchsorted(keys, pair_users * num_items)
        self.keys = pair_users * num_items + keys % num_items - rank  # sorted: d_k in [0, num_items - n_u]
        uniq, counts = torch.unique_consecutive(pair_users, return_counts=True)
        self.full_users = uniq[counts == num_items]

    @property
    def device(self) -> torch.device:
        return self.keys.device

    def to(self, device: torch.device | str) -> "NegativeSampler":
        """A copy whose tensors are on ``device``."""
        other = copy.copy(self)
        other.keys, other.full_users = self.keys.to(device), self.full_users.to(device)
        return other

    def users_without_negatives(self) -> Tensor:
        """The users (sorted) who interacted with every item: nothing to sample for them."""
        return self.full_users

    def num_positives(self, users: Tensor) -> Tensor:
        """n_u, the number of distinct positive items of each user."""
        base = users.to(self.device).long() * self.num_items
        return torch.searchsorted(self.keys, base + self.num_items) - torch.searchsorted(self.keys, base)

    def sample(self, users: Tensor, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """[len(users), n] items, each drawn independently and uniformly among the items that
        user has not interacted with (with replacement). ``generator``: one on the sampler's
        device. Raises ``NaspError`` if a user has no such item."""
        users = users.to(self.device).long()
        base = users * self.num_items
        start = torch.searchsorted(self.keys, base)
        free = self.num_items - (torch.searchsorted(self.keys, base + self.num_items) - start)
        if self.full_users.numel() and bool((free == 0).any()):  # checked only where such users exist
            stuck = torch.unique(users[free == 0]).numel()
            raise NaspError(f"{stuck} user(s) to sample negatives for interacted with every one of the "
                            f"{self.num_items} items: there is no negative item to draw for them")
        # uniform in [0, free): a 62-bit integer modulo free (bias below free / 2**62)
        r = torch.randint(2 ** 62, (users.numel(), n), generator=generator, device=self.device) % free.unsqueeze(1)
        below = torch.searchsorted(self.keys, base.unsqueeze(1) + r, right=True) - start.unsqueeze(1)
        return r + below


# losses ----------------------------------------------------------------------------------------
@LOSSES.register("bpr")
def bpr_loss(pos: Tensor, neg: Tensor) -> Tensor:
    """BPR (Rendle et al., 2009): mean over the B x N (positive, negative) pairs of
    -log sigmoid(s_pos - s_neg). ``pos`` [B], ``neg`` [B, N] (or [B]: N = 1)."""
    neg = neg.reshape(pos.shape[0], -1)
    return -F.logsigmoid(pos.unsqueeze(1) - neg).mean()


@LOSSES.register("bce")
def bce_loss(pos: Tensor, neg: Tensor) -> Tensor:
    """Binary cross-entropy with logits, positives labelled 1 and negatives 0, averaged over
    all B * (1 + N) terms: -(sum log sigmoid(s_pos) + sum log sigmoid(-s_neg)) / (B (1 + N))."""
    neg = neg.reshape(pos.shape[0], -1)
    return -(F.logsigmoid(pos).sum() + F.logsigmoid(-neg).sum()) / (pos.numel() + neg.numel())


# metrics ---------------------------------------------------------------------------------------
def _discounts(k: int, device: torch.device) -> Tensor:
    """1 / log2(r + 1) for the ranks r = 1..k."""
    return 1.0 / torch.log2(torch.arange(2, k + 2, device=device, dtype=torch.float64))


@RANKING_METRICS.register("recall")
def recall(hits: Tensor, num_heldout: Tensor) -> Tensor:
    """hits / |held-out items|."""
    return hits.sum(1, dtype=torch.float64) / num_heldout


@RANKING_METRICS.register("precision")
def precision(hits: Tensor, num_heldout: Tensor) -> Tensor:
    """hits / K."""
    return hits.sum(1, dtype=torch.float64) / hits.shape[1]


@RANKING_METRICS.register("hit")
def hit(hits: Tensor, num_heldout: Tensor) -> Tensor:
    """1 if any held-out item is in the top K."""
    return hits.any(1).double()


@RANKING_METRICS.register("mrr")
def mrr(hits: Tensor, num_heldout: Tensor) -> Tensor:
    """1 / rank of the first hit (1-based), 0 without a hit in the top K."""
    first = hits.double().argmax(1)  # the first maximal entry
    return torch.where(hits.any(1), 1.0 / (first + 1).double(), 0.0)


@RANKING_METRICS.register("ndcg")
def ndcg(hits: Tensor, num_heldout: Tensor) -> Tensor:
    """DCG / IDCG: DCG = sum over hits at rank r of 1 / log2(r + 1); IDCG the same for
    min(K, |held-out|) hits at the top."""
    disc = _discounts(hits.shape[1], hits.device)
    ideal = torch.cumsum(disc, 0)[num_heldout.clamp(1, hits.shape[1]) - 1]
    return (hits.double() * disc).sum(1) / ideal


def per_user_metrics(topk_hits: Tensor, num_heldout: Tensor, ks: Sequence[int]) -> dict[str, Tensor]:
    """Every metric of ``RANKING_METRICS`` at every K of ``ks``, per user: ``{"ndcg@10": [U], ...}``.

    ``topk_hits`` [U, Kmax] bool: whether the item at each rank (best first) is held out for
    that user; ``num_heldout`` [U]: the user's number of held-out items. Users without
    held-out items get NaN. Each K must be in [1, Kmax]."""
    width = topk_hits.shape[1]
    for k in ks:
        if not 1 <= k <= width:
            raise ValueError(f"K = {k} outside [1, {width}] (the top-K lists hold {width} items)")
    has = num_heldout > 0
    count = num_heldout.clamp_min(1)
    out = {}
    for k in ks:
        hits = topk_hits[:, :k] & has.unsqueeze(1)
        for name in RANKING_METRICS:
            out[f"{name}@{k}"] = torch.where(has, RANKING_METRICS.get(name)(hits, count), math.nan)
    return out


def average(per_user: dict[str, Tensor], num_heldout: Tensor) -> dict[str, float]:
    """Per-user metrics averaged over the users that have held-out items (NaN if none)."""
    has = num_heldout > 0
    any_user = bool(has.any())
    return {key: float(value[has].mean()) if any_user else math.nan for key, value in per_user.items()}


def ranking_metrics(topk_hits: Tensor, num_heldout: Tensor, ks: Sequence[int]) -> dict[str, float]:
    """``per_user_metrics`` averaged over the users that have held-out items (NaN if none)."""
    return average(per_user_metrics(topk_hits, num_heldout, ks), num_heldout)


# full ranking ----------------------------------------------------------------------------------
@dataclass
class RankingResult:
    """What ``full_ranking`` measured.

    Attributes:
        metrics: ``"recall@10"`` etc., averaged over the users with held-out items.
        num_users: how many users the averages are over.
        users: the users ranked, in the order given.
        topk: [len(users), max K] item indices, best first.
        hits: [len(users), max K] whether each top-K item is held out for its user.
        num_heldout: [len(users)] held-out items per user (distinct pairs).
        per_user: the metrics per user ([len(users)] each; NaN for users without held-out items).
    """

    metrics: dict[str, float]
    num_users: int
    users: Tensor
    topk: Tensor
    hits: Tensor
    num_heldout: Tensor
    per_user: dict[str, Tensor]


def _pairs_by_row(pairs: Pairs, row_of: Tensor, num_items: int, chunk: int, num_chunks: int
                  ) -> tuple[Tensor, Tensor, list[int]]:
    """The distinct pairs of ranked users as (row in ``users``, item), sorted by row, and each
    chunk's [start, end) into them."""
    keys = pair_keys(pairs[0].to(row_of.device), pairs[1].to(row_of.device), num_items)
    rows, items = row_of[keys // num_items], keys % num_items
    keep = rows >= 0
    rows, items = rows[keep], items[keep]
    order = torch.argsort(rows, stable=True)
    rows, items = rows[order], items[order]
    edges = torch.arange(num_chunks + 1, device=rows.device) * chunk
    return rows, items, torch.searchsorted(rows, edges).tolist()


@torch.no_grad()
def full_ranking(score_fn: Callable[[Tensor], Tensor], users: Optional[Tensor], exclude: Pairs, heldout: Pairs,
                 num_items: int, ks: Sequence[int], chunk: int = 1024) -> RankingResult:
    """Full-ranking evaluation: for chunks of ``chunk`` users, score every item
    (``score_fn(users_chunk) -> [C, num_items]``, e.g. ``network.score_all``), set the ``exclude``
    pairs (the training items; train + valid when testing) to -inf, take the top max(ks), mark the
    ``heldout`` pairs among them and average the metrics over the users with held-out items.

    ``users``: distinct users to rank (None: every user with a held-out pair). All index tensors
    and the scores are on one device, that of ``users`` (the pairs are moved there). The caller
    sets the network's mode and mixing rule. Ties are broken as ``torch.topk`` breaks them (no
    order is promised). A user with fewer than K non-excluded items gets excluded items (at -inf)
    in the remaining places, and they never count as hits; K > num_items raises ``ValueError``
    (the pipeline refuses such a K up front). A held-out pair that is also excluded counts in
    |held-out| but can never be a hit.
    """
    kmax = max(ks)
    if kmax > num_items:
        raise ValueError(f"top-{kmax} asked for, but there are only {num_items} items")
    if users is None:
        users = torch.unique(heldout[0])
    users = users.long()
    if torch.unique(users).numel() != users.numel():
        raise ValueError("the users to rank must be distinct")
    device = users.device
    n = users.numel()
    size = 1 + max([int(t.max()) for t in (users, exclude[0], heldout[0]) if t.numel()], default=0)
    row_of = torch.full((size,), -1, dtype=torch.long, device=device)
    row_of[users] = torch.arange(n, device=device)
    num_chunks = -(-n // chunk)
    ex_rows, ex_items, ex_edges = _pairs_by_row(exclude, row_of, num_items, chunk, num_chunks)
    ho_rows, ho_items, ho_edges = _pairs_by_row(heldout, row_of, num_items, chunk, num_chunks)
    num_heldout = torch.bincount(ho_rows, minlength=n)
    topk, hits = [], []
    for c in range(num_chunks):
        lo, hi = c * chunk, min((c + 1) * chunk, n)
        scores = score_fn(users[lo:hi])
        if scores.shape != (hi - lo, num_items):
            raise ValueError(f"score_fn returned {tuple(scores.shape)} for {hi - lo} users and {num_items} items")
        e = slice(ex_edges[c], ex_edges[c + 1])
        scores = scores.index_put((ex_rows[e] - lo, ex_items[e]), scores.new_tensor(-math.inf))
        values, idx = scores.topk(kmax, dim=1)
        held = torch.zeros(hi - lo, num_items, dtype=torch.bool, device=device)
        h = slice(ho_edges[c], ho_edges[c + 1])
        held[ho_rows[h] - lo, ho_items[h]] = True
        topk.append(idx)
        hits.append(held.gather(1, idx) & (values > -math.inf))
    topk_t = torch.cat(topk) if topk else torch.zeros(0, kmax, dtype=torch.long, device=device)
    hits_t = torch.cat(hits) if hits else torch.zeros(0, kmax, dtype=torch.bool, device=device)
    per_user = per_user_metrics(hits_t, num_heldout, ks)
    return RankingResult(average(per_user, num_heldout), int((num_heldout > 0).sum()), users, topk_t, hits_t,
                         num_heldout, per_user)
