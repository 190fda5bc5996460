"""The SIF search space (REFERENCE §2): element-wise MLPs and vector-wise interaction ops.

Every vector-wise op is a module ``op(p, q) -> score`` with its own output head; the registry
``INTERACTION_FUNCTIONS`` maps names to op classes, so a new interaction function is one small class.
Every op also scores all pairs of a user block and an item block at once
(``score_matrix(p, q) -> [U, I]``, used by full ranking): the base class ``InteractionOp``
broadcasts ``forward`` over item chunks, so a new op is correct without writing one; the ops
here override it with matrix products where the score decomposes.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from nasp.errors import NaspError
from nasp.registry import Registry

INTERACTION_FUNCTIONS: Registry = Registry("interaction function")

#: the vector-wise ops searched by default (the paper's space)
SEARCH_SPACE = ("multiply", "plus", "min", "max", "concat")


def unit_ball(w: Tensor) -> Tensor:
    """Project ``w`` onto the unit L2 ball (done at every forward, as the authors)."""
    return w / w.norm().clamp_min(1.0)


def inner_box(w: Tensor) -> Tensor:
    """Clip every entry of ``w`` (length n) to [-1/sqrt(n), 1/sqrt(n)]: the largest box inside
    the unit L2 ball (done at every forward)."""
    bound = w.numel() ** -0.5
    return w.clamp(-bound, bound)


#: How an op's output vector w (length n) is bounded; both start at w_k = 1/sqrt(n), the plain
#: sum scaled into the ball. "ball": the authors' unit L2 ball. "box" (default): the largest box
#: inside it, |w_k| <= 1/sqrt(n). The ball lets a head pile its weight onto a few coordinates
#: (up to 1 each instead of 1/sqrt(n)), so that the same scores cost those embedding coordinates
#: far less L2 penalty; the box leaves no such escape. Measured in docs/sif.md.
OUTPUT_BOUNDS = {"box": inner_box, "ball": unit_ball}


def check_head(name: str) -> str:
    """``name`` if it names a head bound, else a clear ``NaspError``."""
    if name not in OUTPUT_BOUNDS:
        raise NaspError(f"unknown head {name!r}; known: {', '.join(OUTPUT_BOUNDS)}")
    return name


class ElementwiseMLP(nn.Module):
    """g: scalar -> Linear(1, h) -> tanh -> Linear(h, 1), applied to every coordinate.

    ``residual=True`` (our default, ``--mlp residual``) adds a skip path, g(x) = x + MLP(x), and
    starts the output layer at zero, so the search starts from plain embeddings and learns a
    non-linearity only where the validation data ask for one. ``residual=False``
    (``--mlp paper``) is the paper's plain MLP, g(x) = MLP(x), with PyTorch's default random
    initialisation, as the authors start. Both hold the same parameters (``inner``, ``outer``).
    """

    def __init__(self, hidden: int = 8, residual: bool = True) -> None:
        super().__init__()
        self.hidden = hidden
        self.residual = residual
        self.inner = nn.Linear(1, hidden)
        self.outer = nn.Linear(hidden, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.inner.reset_parameters()
        if self.residual:
            nn.init.zeros_(self.outer.weight)
            nn.init.zeros_(self.outer.bias)
        else:
            self.outer.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """g applied to every entry of ``x`` (any shape), through ``ElementwiseMLPFunction``:
        the same values and gradients as ``reference`` without its [..., h] autograd graph."""
        weights = (self.inner.weight, self.inner.bias, self.outer.weight, self.outer.bias)
        slope_only = torch.is_grad_enabled() and x.requires_grad and not any(w.requires_grad for w in weights)
        return ElementwiseMLPFunction.apply(x, *weights, self.residual, slope_only)

    def reference(self, x: Tensor) -> Tensor:
        """The plain module path (Linear -> tanh -> Linear through autograd): what ``forward``
        computes; kept to check it."""
        out = self.outer(torch.tanh(self.inner(x.unsqueeze(-1)))).squeeze(-1)
        return x + out if self.residual else out


class ElementwiseMLPFunction(torch.autograd.Function):
    """g(x) = [x +] w2 . tanh(w1 x + b1) + b2 per entry of x, with a hand-written backward.

    Forward keeps one [h, ...] tensor (the activations a, tanh taken as 2 sigmoid(2z) - 1);
    backward, with g the output gradient: dz = g * w2 * (1 - a^2), dx = dz . w1 [+ g],
    dw1 = sum dz * x, db1 = sum dz, dw2 = sum g * a, db2 = sum g (weight gradients only when
    asked for). ``slope_only`` (a frozen MLP, as in retraining, whose input needs a gradient):
    forward keeps only g'(x) = [1 +] sum_h w1 w2 (1 - a^2) per entry, and backward is one
    product, g * g'(x), instead of four passes over [h, ...]. Once differentiable."""

    @staticmethod
    def forward(ctx, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, residual: bool,
                slope_only: bool = False) -> Tensor:
        # element-wise work gains nothing from autocast, and a bfloat16 slope or activation would
        # cost the gradients their precision (--amp): the MLP computes in its weights' dtype
        with torch.autocast(x.device.type, enabled=False):
            return ElementwiseMLPFunction._forward(ctx, x.to(w1.dtype), w1, b1, w2, b2, residual, slope_only)

    @staticmethod
    def _forward(ctx, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, residual: bool,
                 slope_only: bool) -> Tensor:
        h = w1.shape[0]
        # the activations as [h, entries]: every op then runs along contiguous rows, and the
        # products over h are vector-matrix ones (both 1.8-2.7x faster than [entries, h] here).
        # tanh(z) = 2 sigmoid(2z) - 1: sigmoid is ~3.5x cheaper than tanh on CPU (float32: within 2e-7)
        # (w x).add_(b), not addcmul(b, w, x): its broadcast is 4x slower
        a = ((2 * w1).reshape(h, 1) * x.reshape(1, -1)).add_((2 * b1).reshape(h, 1)).sigmoid_().mul_(2).sub_(1)
        out = (w2.reshape(h) @ a).reshape(x.shape) + b2.reshape(())
        if residual:
            out = out + x
        ctx.residual, ctx.slope_only = residual, slope_only
        if slope_only:
            w12 = w1.reshape(h) * w2.reshape(h)
            slope = (w12.sum() + float(residual)) - w12 @ a.square()
            ctx.save_for_backward(slope.reshape(x.shape))
        else:
            ctx.save_for_backward(x, a, w1, w2)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        if ctx.slope_only:
            (slope,) = ctx.saved_tensors
            return grad * slope, None, None, None, None, None, None
        x, a, w1, w2 = ctx.saved_tensors
        h = w1.shape[0]
        flat_g = grad.reshape(-1)
        need_x, need_w1, need_b1, need_w2, need_b2 = ctx.needs_input_grad[:5]
        dx = dw1 = db1 = dw2 = db2 = None
        if need_w2:
            dw2 = (a @ flat_g).reshape(w2.shape)
        if need_b2:
            db2 = flat_g.sum().reshape(1)
        if need_x or need_w1 or need_b1:
            one = torch.ones((), dtype=a.dtype, device=a.device)
            dz = torch.addcmul(one, a, a, value=-1).mul_(w2.reshape(h, 1)).mul_(flat_g.reshape(1, -1))  # [h, entries]
            if need_x:
                dx = (w1.reshape(h) @ dz).reshape(x.shape)
                if ctx.residual:
                    dx = dx + grad
            if need_w1:
                dw1 = (dz @ x.reshape(-1)).reshape(w1.shape)
            if need_b1:
                db1 = dz.sum(1)
        return dx, dw1, db1, dw2, db2, None, None


#: ``--mlp``: the forms of the element-wise MLP, name -> whether it has the skip path
MLP_FORMS = {"residual": True, "paper": False}


def check_mlp(name: str) -> str:
    """``name`` if it names an element-wise MLP form, else a clear ``NaspError``."""
    if name not in MLP_FORMS:
        raise NaspError(f"unknown element-wise MLP form {name!r}; known: {', '.join(MLP_FORMS)}")
    return name


#: how many tensor elements a broadcast ``score_matrix`` builds at once (per intermediate
#: [users, item chunk, width] tensor): 2**19 float32 entries = 2 MiB, which stays in cache; on a
#: CPU core it scored 1,024 users x 3,706 items (k = 64) with the NCF tower 1.4x faster than
#: 2**21 and 4x faster than 2**24 (one measurement; whole runs: benchmarks/sif_full_ranking_speed.py)
BROADCAST_ELEMENTS = 2 ** 19


def item_chunks(p: Tensor, q: Tensor, width: int, score: Callable[[slice], Tensor],
                max_elements: int = BROADCAST_ELEMENTS) -> Tensor:
    """[U, I] scores of the users of ``p`` and the items of ``q``, filled chunk by chunk over
    the items: ``score(cols)`` returns the [U, len(cols)] block of the items ``q[cols]``; a chunk
    holds at most ``max_elements`` entries of a [U, chunk, width] intermediate (at least one item)."""
    num_users, num_items = p.shape[0], q.shape[0]
    step = max(1, max_elements // max(1, num_users * width))
    out = p.new_empty(num_users, num_items)
    for start in range(0, num_items, step):
        cols = slice(start, min(start + step, num_items))
        out[:, cols] = score(cols)
    return out


class InteractionOp(nn.Module):
    """Base of the interaction ops: ``forward(p, q)`` scores pairs row by row (any leading
    dimensions, vectors on the last one); ``score_matrix(p, q)`` scores every user of ``p``
    with every item of ``q``."""

    #: whether the op takes a head bound (``--head``); the NCF baselines have none of their own
    uses_head = False

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        raise NotImplementedError

    def score_matrix(self, p: Tensor, q: Tensor, max_elements: int = BROADCAST_ELEMENTS) -> Tensor:
        """``forward`` on every pair: [U, k] x [I, k] -> [U, I]. This default broadcasts both
        sides to [U, chunk, k] over chunks of items, so memory stays bounded."""
        num_users, k = p.shape

        def block(cols: slice) -> Tensor:
            qc = q[cols]
            return self(p.unsqueeze(1).expand(num_users, qc.shape[0], k), qc.unsqueeze(0).expand(num_users, -1, -1))

        return item_chunks(p, q, k, block, max_elements)


#: the vector-wise ops: ``op(p, q) -> z``, a vector per pair (width ``dim * width_factor``),
#: which an output head turns into a score; the paper's five and two of AutoCF's (REFERENCE §4)
VECTOR_OPS: Registry = Registry("vector-wise op")


class VectorOp(nn.Module):
    """Base of the vector-wise ops. ``linear_matrix(p, q, w)`` scores every user of ``p`` with
    every item of ``q`` as ``w . op(p, q)`` when that decomposes into matrix products (full
    ranking); ``None`` says it does not, and the caller broadcasts ``forward``."""

    width_factor = 1

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        raise NotImplementedError

    def linear_matrix(self, p: Tensor, q: Tensor, w: Tensor) -> Optional[Tensor]:
        return None


@VECTOR_OPS.register("multiply")
class MultiplyOp(VectorOp):
    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        return p * q

    def linear_matrix(self, p: Tensor, q: Tensor, w: Tensor) -> Tensor:
        """w . (p * q) = (p * w) @ q^T."""
        return (p * w) @ q.T


@VECTOR_OPS.register("plus")
class PlusOp(VectorOp):
    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        return p + q

    def linear_matrix(self, p: Tensor, q: Tensor, w: Tensor) -> Tensor:
        """w . (p + q) = p . w (a user part) + q . w (an item part)."""
        return (p @ w).unsqueeze(1) + (q @ w).unsqueeze(0)


@VECTOR_OPS.register("min")
class MinOp(VectorOp):
    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        return torch.minimum(p, q)


@VECTOR_OPS.register("max")
class MaxOp(VectorOp):
    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        return torch.maximum(p, q)


@VECTOR_OPS.register("concat")
class ConcatOp(VectorOp):
    width_factor = 2

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        return torch.cat([p, q], dim=-1)

    def linear_matrix(self, p: Tensor, q: Tensor, w: Tensor) -> Tensor:
        """w . [p; q] = p . w_1 (a user part) + q . w_2 (an item part)."""
        k = p.shape[-1]
        return (p @ w[:k]).unsqueeze(1) + (q @ w[k:]).unsqueeze(0)


@VECTOR_OPS.register("weighted")
class WeightedOp(VectorOp):
    """The learned-weight product p * (W q), W a k x k matrix that starts as the identity (so
    the op starts as ``multiply``): a bilinear form per coordinate of the output."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.weight = nn.Parameter(torch.eye(dim))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.copy_(torch.eye(self.dim))

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        return p * (q @ self.weight.T)

    def linear_matrix(self, p: Tensor, q: Tensor, w: Tensor) -> Tensor:
        """w . (p * W q) = (p * w) @ (q W^T)^T."""
        return (p * w) @ (q @ self.weight.T).T


@VECTOR_OPS.register("concat_mlp")
class ConcatMLPOp(VectorOp):
    """A small MLP over the concatenation: ReLU(W [p; q] + b), width k (AutoCF's MLP op)."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.layer = nn.Linear(2 * dim, dim)

    def reset_parameters(self) -> None:
        self.layer.reset_parameters()

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        return torch.relu(self.layer(torch.cat([p, q], dim=-1)))


class HeadOp(InteractionOp):
    """A vector-wise op (``VECTOR_OPS[vector]``) followed by its own bounded output vector w:
    score = w . op(p, q). One subclass per op, registered under the op's name."""

    uses_head = True
    #: the name of the vector-wise op in ``VECTOR_OPS``
    vector = ""

    def __init__(self, dim: int, head: str = "box") -> None:
        super().__init__()
        self.dim = dim
        self.bound = OUTPUT_BOUNDS[check_head(head)]
        self.combine = VECTOR_OPS.get(self.vector)(dim)
        self.head = nn.Parameter(torch.empty(dim * self.combine.width_factor))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # every op starts as the plain sum of its output vector's entries, scaled into the ball
        nn.init.constant_(self.head, 1.0 / self.head.numel() ** 0.5)
        if hasattr(self.combine, "reset_parameters"):
            self.combine.reset_parameters()

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        return self.combine(p, q) @ self.bound(self.head)

    def score_matrix(self, p: Tensor, q: Tensor, max_elements: int = BROADCAST_ELEMENTS) -> Tensor:
        """The vector op's matrix products where the score decomposes, else broadcast."""
        out = self.combine.linear_matrix(p, q, self.bound(self.head))
        return out if out is not None else super().score_matrix(p, q, max_elements)

    def num_params(self) -> int:
        return sum(w.numel() for w in self.parameters())


def _bounded(name: str) -> type:
    """The interaction op ``name``: the vector-wise op of that name with a bounded head."""
    cls = type(name.title().replace("_", ""), (HeadOp,), {"vector": name, "__doc__": f"``{name}`` with a bounded output vector."})
    return INTERACTION_FUNCTIONS.register(name)(cls)


#: every vector-wise op is also an interaction op of the paper's space (``--ifc NAME``); a new
#: ``VECTOR_OPS`` entry becomes one here without more code
for _name in VECTOR_OPS.names():
    _bounded(_name)


@INTERACTION_FUNCTIONS.register("gmf")
class GMF(InteractionOp):
    """Generalized MF (NCF): an unconstrained output vector over p * q."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.head = nn.Parameter(torch.ones(dim))  # unbounded, as in NCF

    def reset_parameters(self) -> None:
        nn.init.ones_(self.head)

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        return (p * q) @ self.head

    def score_matrix(self, p: Tensor, q: Tensor, max_elements: int = BROADCAST_ELEMENTS) -> Tensor:
        """(p * h) @ q^T."""
        return (p * self.head) @ q.T


def tower_matrix(first: nn.Linear, rest: Callable[[Tensor], Tensor], p: Tensor, q: Tensor,
                 max_elements: int = BROADCAST_ELEMENTS) -> Tensor:
    """[U, I] scores of ``rest(first(cat(p, q)))`` for every pair, where ``rest`` maps the
    first layer's [..., h] pre-activations to [...] scores. The first layer splits into a user
    part and an item part (W [p; q] + b = W_p p + b + W_q q), computed once per side; only the
    sum and the later layers are broadcast, over chunks of items."""
    k = p.shape[-1]
    user_part = p @ first.weight[:, :k].T + first.bias  # [U, h]
    item_part = q @ first.weight[:, k:].T  # [I, h]

    def block(cols: slice) -> Tensor:
        return rest(user_part.unsqueeze(1) + item_part[cols].unsqueeze(0))

    return item_chunks(p, q, first.out_features, block, max_elements)


@INTERACTION_FUNCTIONS.register("mlp")
class MLPTower(InteractionOp):
    """NCF's MLP interaction: concat -> Linear(2k, 2k) -> ReLU -> Linear(2k, k) -> ReLU -> Linear(k, 1)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, 1)
        )

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        return self.net(torch.cat([p, q], dim=-1)).squeeze(-1)

    def score_matrix(self, p: Tensor, q: Tensor, max_elements: int = BROADCAST_ELEMENTS) -> Tensor:
        """The first layer split into user and item parts, the rest broadcast over item chunks."""
        return tower_matrix(self.net[0], lambda z: self.net[1:](z).squeeze(-1), p, q, max_elements)


@INTERACTION_FUNCTIONS.register("neumf")
class NeuMF(InteractionOp):
    """NCF's NeuMF fusion on one k-dim vector per side, split as NCF keeps separate GMF and MLP
    embeddings: the first ``k // 2`` coordinates feed GMF, the rest (m of them) an MLP tower,
    score = h . [p_g * q_g ; tower(cat(p_m, q_m))], tower = Linear(2m, 2m) -> ReLU ->
    Linear(2m, m) -> ReLU (``MLPTower`` without its last layer), h an unbounded output vector
    (length k // 2 + m = k) that starts at ones, like ``gmf``'s. Not in the searched space."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gmf_dim = dim // 2
        m = dim - self.gmf_dim
        self.tower = nn.Sequential(nn.Linear(2 * m, 2 * m), nn.ReLU(), nn.Linear(2 * m, m), nn.ReLU())
        self.head = nn.Parameter(torch.ones(self.gmf_dim + m))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.head)

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        g = self.gmf_dim
        mlp = self.tower(torch.cat([p[..., g:], q[..., g:]], dim=-1))
        return (p[..., :g] * q[..., :g]) @ self.head[:g] + mlp @ self.head[g:]

    def score_matrix(self, p: Tensor, q: Tensor, max_elements: int = BROADCAST_ELEMENTS) -> Tensor:
        """GMF half as a matrix product, MLP half through ``tower_matrix``."""
        g = self.gmf_dim
        h_mlp = self.head[g:]
        gmf = (p[:, :g] * self.head[:g]) @ q[:, :g].T
        return gmf + tower_matrix(self.tower[0], lambda z: self.tower[1:](z) @ h_mlp, p[:, g:], q[:, g:], max_elements)


@INTERACTION_FUNCTIONS.register("pop")
class Popularity(InteractionOp):
    """The popularity baseline of the ranking task: no interaction at all (score 0); the model's
    item bias holds each item's number of training interactions, and nothing is trained."""

    trains = False

    def __init__(self, dim: int) -> None:
        super().__init__()

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        return p.new_zeros(torch.broadcast_shapes(p.shape, q.shape)[:-1])

    def score_matrix(self, p: Tensor, q: Tensor, max_elements: int = 0) -> Tensor:
        return p.new_zeros(p.shape[0], q.shape[0])


# the larger (AutoCF-style) space: its other rows -------------------------------------------------
#: the prediction heads of the larger space: ``head(z) -> score`` for a vector z of width n
PREDICTION_HEADS: Registry = Registry("prediction head")


class LinearHead(nn.Module):
    """score = w . z, w bounded by ``bound`` (``OUTPUT_BOUNDS``) or free; starts at w_k = 1/sqrt(n)."""

    def __init__(self, width: int, bound: Optional[Callable[[Tensor], Tensor]] = None) -> None:
        super().__init__()
        self.bound = bound
        self.weight = nn.Parameter(torch.empty(width))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.weight, 1.0 / self.weight.numel() ** 0.5)

    def vector(self) -> Tensor:
        """The (bounded) output vector w."""
        return self.bound(self.weight) if self.bound is not None else self.weight

    def forward(self, z: Tensor) -> Tensor:
        return z @ self.vector()


@PREDICTION_HEADS.register("box")
class BoxHead(LinearHead):
    """The bounded vector: |w_k| <= 1/sqrt(n), inside the unit ball (``--head box``)."""

    def __init__(self, width: int) -> None:
        super().__init__(width, inner_box)


@PREDICTION_HEADS.register("free")
class FreeHead(LinearHead):
    """An unbounded vector (NCF's GMF head)."""

    def __init__(self, width: int) -> None:
        super().__init__(width, None)


@PREDICTION_HEADS.register("mlp")
class MLPHead(nn.Module):
    """A small MLP: Linear(n, h) -> ReLU -> Linear(h, 1), h = n / 2 (at least 1); the output
    layer starts at zero, so the head starts with zero scores (the biases alone)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.inner = nn.Linear(width, max(1, width // 2))
        self.outer = nn.Linear(max(1, width // 2), 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.inner.reset_parameters()
        nn.init.zeros_(self.outer.weight)
        nn.init.zeros_(self.outer.bias)

    def vector(self) -> None:
        return None  # not linear in z

    def forward(self, z: Tensor) -> Tensor:
        return self.outer(torch.relu(self.inner(z))).squeeze(-1)


@torch.no_grad()
def inherit(src: nn.Module, dst: nn.Module) -> list[tuple[nn.Parameter, nn.Parameter]]:
    """Start ``dst`` from the weights of ``src``, which it replaces (a local search's swap): a
    linear head takes the other's (bounded) output vector, so a free head starts as the box head
    it replaces; any other parameter takes the one of the same name and shape (an op's bounded
    output vector). Parameters without a counterpart keep their values. Returns the (source,
    destination) pairs copied."""
    if isinstance(src, LinearHead) and isinstance(dst, LinearHead):
        pairs = [(src.weight, dst.weight)] if src.weight.shape == dst.weight.shape else []
    else:
        theirs = dict(src.named_parameters())
        pairs = [(theirs[name], w) for name, w in dst.named_parameters() if name in theirs and theirs[name].shape == w.shape]
    for source, w in pairs:
        w.copy_(src.vector() if isinstance(src, LinearHead) else source)
    return pairs


#: the element-wise functions of the larger space, applied to every coordinate of a side's
#: vector: ``FUNCTIONS.get(name)(hidden, residual)``; "mlp" is ``ElementwiseMLP`` (its weights
#: searched on validation data, as in the paper's space), the others have no parameters
FUNCTIONS: Registry = Registry("element-wise function")
FUNCTIONS.register("identity")(lambda hidden, residual: nn.Identity())
FUNCTIONS.register("mlp")(ElementwiseMLP)
FUNCTIONS.register("tanh")(lambda hidden, residual: nn.Tanh())
FUNCTIONS.register("relu")(lambda hidden, residual: nn.ReLU())

#: the input encodings of a side: its id embedding, its history embedding (``HistoryEncoder``:
#: the other side's factors of what it interacted with in training) or their sum
INPUTS = ("id", "history", "both")
#: the extra input encodings of the ``autocf-graph`` space, per side (``sif.graph``): the id
#: embedding plus gated LightGCN-style propagation over the training graph (1 or 2 hops), and on
#: the user side an item-item term (the items similar to the user's history)
GRAPH_INPUTS = {"user": ("graph1", "graph2", "itemitem"), "item": ("graph1", "graph2")}

#: ``--space``: the rows of each search space, row name -> candidates. "sif" is the paper's
#: (one row of vector-wise ops; element-wise MLPs on both sides, the user vector SVD++'s, the
#: box head); "autocf" searches every choice jointly, one row of alphas each (after AutoCF, Gao,
#: Yao et al., KDD 2021); "autocf-graph" adds the graph and item-item input encodings
SPACES = {
    "sif": {"op": SEARCH_SPACE},
    "autocf": {
        "user_input": INPUTS,
        "item_input": INPUTS,
        "user_function": tuple(FUNCTIONS.names()),
        "item_function": tuple(FUNCTIONS.names()),
        "op": tuple(VECTOR_OPS.names()),
        "head": tuple(PREDICTION_HEADS.names()),
    },
}
SPACES["autocf-graph"] = {**SPACES["autocf"], "user_input": INPUTS + GRAPH_INPUTS["user"],
                          "item_input": INPUTS + GRAPH_INPUTS["item"]}
#: the spaces whose models are ``sif.joint.JointConfig``s (one row of alphas per choice)
JOINT_SPACES = ("autocf", "autocf-graph")
