"""The SIF network: embeddings, biases, element-wise MLPs and a mix of interaction ops."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from nasp import SearchNetwork, mix, plan

from .space import BROADCAST_ELEMENTS, INTERACTIONS, MLP_FORMS, SEARCH_SPACE, ElementwiseMLP, check_head, check_mlp


#: what a saved model or arch file means when it lacks an option: files written before the
#: implicit term, the box head and ``--mlp`` existed had biases, no implicit term, the ball head
#: and the residual element-wise MLP
LEGACY = {"biases": True, "implicit": False, "head": "ball", "mlp": "residual"}


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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ops"] = list(self.ops)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = {**LEGACY, **d}
        d["ops"] = tuple(d["ops"])
        return cls(**d)



#: user/item embedding and bias tables with at least this many rows get sparse gradients
#: (``nn.Embedding(sparse=True)``): a step then allocates, clips and applies the batch's rows
#: instead of a dense gradient of the whole table. 2,048 rows is 4 batches' rows at the default
#: batch size (512): measured per step, sparse gradients were 0.95-0.99x on ml-100k's tables
#: (943 and 1,682 rows, which stay dense), 1.05x on ml-1m's and 2.7-3.3x on ml-20m's (docs/sif.md).
#: The implicit table stays dense: a batch's histories cover most of its rows.
SPARSE_GRAD_MIN_ROWS = 2048


def _table(rows: int, dim: int) -> nn.Embedding:
    """An embedding table, with sparse gradients from ``SPARSE_GRAD_MIN_ROWS`` rows on."""
    return nn.Embedding(rows, dim, sparse=rows >= SPARSE_GRAD_MIN_ROWS)


#: buffers that describe the training data, not the learned model: a network built for other
#: splits (the refit on train+valid) keeps its own when it loads searched weights
DATA_BUFFERS = ("known_users", "known_items", "rating_range", "history_indptr", "history_items")


class SIFNetwork(SearchNetwork):
    """prediction = mu + b_u + b_i + sum_m alpha_m * w_m . op_m(g_u(u), g_v(v)).

    ``alpha`` (1 x len(ops)) is the architecture; the element-wise MLPs g_u, g_v are searched
    with it on validation data (``arch_extra_parameters``); everything else is a weight.
    With ``implicit`` the user vector is SVD++'s (Koren, KDD 2008):
    u = p_u + |N(u)|^-1/2 * sum_{j in N(u)} y_j, N(u) the items u rated in training
    (``set_history``). Users/items flagged unknown (never seen in training) get only the
    biases that exist.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        for name in config.ops:
            INTERACTIONS.get(name)  # unknown names raise a clear NaspError
        check_head(config.head)
        check_mlp(config.mlp)
        self.config = config
        k = config.dim
        self.user_emb = _table(config.num_users, k)
        self.item_emb = _table(config.num_items, k)
        self.user_bias = _table(config.num_users, 1)
        self.item_bias = _table(config.num_items, 1)
        self.global_bias = nn.Parameter(torch.tensor(float(config.global_mean)))
        self.ops = nn.ModuleList(self._op(name, k, config.head) for name in config.ops)
        residual = MLP_FORMS[config.mlp]
        self.mlp_u = ElementwiseMLP(config.mlp_hidden, residual) if config.elementwise else None
        self.mlp_v = ElementwiseMLP(config.mlp_hidden, residual) if config.elementwise else None
        self.alpha = nn.Parameter(0.5 + 1e-3 * torch.randn(1, len(config.ops)))
        self.register_buffer("known_users", torch.ones(config.num_users, dtype=torch.bool))
        self.register_buffer("known_items", torch.ones(config.num_items, dtype=torch.bool))
        self.register_buffer("rating_range", torch.tensor([-float("inf"), float("inf")]))
        self.implicit_emb = nn.Embedding(config.num_items, k) if config.implicit else None
        self.register_buffer("history_indptr", torch.zeros(config.num_users + 1, dtype=torch.long))
        self.register_buffer("history_items", torch.zeros(0, dtype=torch.long))
        self.reset_embeddings()
        if len(config.ops) == 1:
            with torch.no_grad():
                self.alpha.fill_(1.0)

    @staticmethod
    def _op(name: str, dim: int, head: str) -> nn.Module:
        op = INTERACTIONS.get(name)
        return op(dim, head) if op.uses_head else op(dim)

    def reset_embeddings(self) -> None:
        nn.init.normal_(self.user_emb.weight, std=0.01)
        nn.init.normal_(self.item_emb.weight, std=0.01)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        if self.implicit_emb is not None:
            nn.init.zeros_(self.implicit_emb.weight)  # starts as plain MF
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

    def set_history(self, users: Tensor, items: Tensor) -> None:
        """N(u) for the implicit term: the (user, item) pairs of the training ratings."""
        order = torch.argsort(users, stable=True)
        counts = torch.bincount(users, minlength=self.config.num_users)
        indptr = torch.zeros(self.config.num_users + 1, dtype=torch.long, device=users.device)
        indptr[1:] = torch.cumsum(counts, 0)
        self.history_indptr = indptr.to(self.history_indptr.device)
        self.history_items = items[order].long().to(self.history_items.device)

    def load_model_state(self, state: dict) -> None:
        """``load_state_dict`` for a saved model, whose history may differ in length (or be
        absent: models saved before the implicit term existed have none)."""
        state = dict(state)
        for key in ("history_indptr", "history_items"):
            state.setdefault(key, getattr(self, key))
        self.history_items = torch.empty_like(state["history_items"])
        self.load_state_dict(state)

    def implicit(self, users: Tensor) -> Tensor:
        """|N(u)|^-1/2 * sum of y_j over the items each user rated in training."""
        uniq, inverse = torch.unique(users, return_inverse=True)
        start, end = self.history_indptr[uniq], self.history_indptr[uniq + 1]
        lengths = end - start
        offsets = torch.cumsum(lengths, 0) - lengths
        flat = torch.repeat_interleave(start - offsets, lengths) + torch.arange(int(lengths.sum()), device=users.device)
        sums = nn.functional.embedding_bag(self.history_items[flat], self.implicit_emb.weight, offsets, mode="sum")
        return (sums * lengths.clamp_min(1).to(sums.dtype).rsqrt().unsqueeze(1))[inverse]

    # the SearchNetwork contract ---------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def arch_extra_parameters(self) -> list[nn.Parameter]:
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

    # forward ----------------------------------------------------------------------------------
    def embed(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        u = self.user_emb(users)
        if self.implicit_emb is not None:
            u = u + self.implicit(users)
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
        scores = out if out is not None else p.new_zeros(p.shape[0], q.shape[0])
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
        and one embedding backward per table)."""
        p, q = self.user_emb(users), self.item_emb(items)
        u = p + self.implicit(users) if self.implicit_emb is not None else p
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
        if self.implicit_emb is None:
            return self.user_emb.weight.new_zeros(())
        return self.implicit_emb(items).pow(2).sum() / users.shape[0]
