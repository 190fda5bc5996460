"""The DARTS recurrent cell (search and fixed), the language model around it, and the loss.

Cell (per time step, hidden size H): the initial state is a highway step from h_{t-1}:
``[c0, h0] = [x_t, h_{t-1}] W0``, ``s0 = h_{t-1} + sigmoid(c0) * (tanh(h0) - h_{t-1})``; node
``i`` with predecessor state ``s`` and activation ``f``: ``[c, h] = s W_i``,
``s_i = s + sigmoid(c) * (f(h) - s)``; ``h_t`` = mean of the nodes in ``concat``. ``W_i`` is
shared by all candidate predecessors of node ``i`` (as in DARTS), so the search network and the
fixed cell have the same weights. Variational dropout: one mask per segment on x (``dropoutx``)
and on every state fed to a matrix (``dropouth``); locked dropout on the embedded input
(``dropouti``) and on the output (``dropout``); embedding dropout drops whole words
(``dropoute``). Decoder weights are tied to the embedding (a projection is added when the
embedding and hidden sizes differ).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import prox
from ..distributed import World
from ..mixing import MixPlan, mix, plan
from ..network import SearchNetwork
from .corpus import Segment
from .genotypes import RecurrentGenotype
from .spaces import ACTIVATIONS, RecurrentSpace

INIT_RANGE = 0.04


@dataclass(frozen=True)
class Dropouts:
    """Dropout rates (names as in DARTS/AWD-LSTM)."""

    output: float = 0.75  # dropout: locked, on the cell output before the decoder
    hidden: float = 0.25  # dropouth: variational, on states entering a matrix
    x: float = 0.75  # dropoutx: variational, on x_t entering W0
    input: float = 0.2  # dropouti: locked, on the embedded input
    embedding: float = 0.0  # dropoute: whole words of the embedding matrix

    def to_dict(self) -> dict:
        return asdict(self)


SEARCH_DROPOUTS = Dropouts(embedding=0.0)
TRAIN_DROPOUTS = Dropouts(embedding=0.1)


def _mask(shape: Sequence[int], p: float, like: Tensor) -> Tensor:
    return like.new_empty(shape).bernoulli_(1 - p) / (1 - p)


def locked_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """One dropout mask per sequence, shared over time (x: T x B x D)."""
    if not training or p <= 0:
        return x
    return x * _mask((1, x.size(1), x.size(2)), p, x)


def embedded_dropout(embed: nn.Embedding, words: Tensor, p: float, training: bool) -> Tensor:
    """Embedding lookup that drops whole words (rows of the matrix) with probability ``p``."""
    weight = embed.weight
    if training and p > 0:
        weight = weight * _mask((weight.size(0), 1), p, weight)
    return F.embedding(words, weight)


class RecurrentCell(nn.Module):
    """Shared part of the search and the fixed cell: weights, initial state, the node update."""

    def __init__(self, emb_size: int, hidden_size: int, steps: int, concat: Sequence[int], dropouts: Dropouts) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.steps = steps
        self.concat = list(concat)
        self.dropouts = dropouts
        self.w0 = nn.Parameter(torch.empty(emb_size + hidden_size, 2 * hidden_size))
        self.ws = nn.ParameterList(nn.Parameter(torch.empty(hidden_size, 2 * hidden_size)) for _ in range(steps))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.w0, -INIT_RANGE, INIT_RANGE)
        for w in self.ws:
            nn.init.uniform_(w, -INIT_RANGE, INIT_RANGE)

    def gates(self, node: int, s: Tensor, h_mask: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """``sigmoid(c)`` and the pre-activation ``h`` of node ``node`` from state(s) ``s``
        (B x H, or n x B x H for n predecessors at once)."""
        if h_mask is not None:
            s = s * h_mask
        c, h = (s @ self.ws[node]).split(self.hidden_size, dim=-1)
        return c.sigmoid(), h

    @staticmethod
    def highway(s: Tensor, c: Tensor, h: Tensor) -> Tensor:
        return s + c * (h - s)

    def initial_state(self, x: Tensor, h_prev: Tensor, x_mask: Optional[Tensor], h_mask: Optional[Tensor]) -> Tensor:
        x = x * x_mask if x_mask is not None else x
        hm = h_prev * h_mask if h_mask is not None else h_prev
        c0, h0 = (torch.cat([x, hm], dim=-1) @ self.w0).split(self.hidden_size, dim=-1)
        return self.highway(h_prev, c0.sigmoid(), h0.tanh())

    def node(self, i: int, states: list[Tensor], h_mask: Optional[Tensor], arch: Any) -> Tensor:
        """State of intermediate node ``i`` (0-based) from the earlier states."""
        raise NotImplementedError

    def forward(self, inputs: Tensor, hidden: Tensor, arch: Any = None) -> tuple[Tensor, Tensor]:
        """Run over ``inputs`` (T x B x E) from ``hidden`` (B x H); returns (T x B x H, B x H)."""
        x_mask = h_mask = None
        if self.training and self.dropouts.x > 0:
            x_mask = _mask((inputs.size(1), inputs.size(2)), self.dropouts.x, inputs)
        if self.training and self.dropouts.hidden > 0:
            h_mask = _mask(hidden.shape, self.dropouts.hidden, hidden)
        outputs = []
        for t in range(inputs.size(0)):
            states = [self.initial_state(inputs[t], hidden, x_mask, h_mask)]
            for i in range(self.steps):
                states.append(self.node(i, states, h_mask, arch))
            hidden = torch.stack([states[c] for c in self.concat], dim=-1).mean(-1)
            outputs.append(hidden)
        return torch.stack(outputs), hidden


class FixedCell(RecurrentCell):
    """The cell of one genotype (evaluation model): each node runs its one (predecessor, activation)."""

    def __init__(self, genotype: RecurrentGenotype, emb_size: int, hidden_size: int, dropouts: Dropouts) -> None:
        super().__init__(emb_size, hidden_size, genotype.steps, genotype.concat, dropouts)
        self.genotype = genotype
        self.activations = [ACTIVATIONS.get(a) for a, _ in genotype.recurrent]

    def node(self, i: int, states: list[Tensor], h_mask: Optional[Tensor], arch: Any) -> Tensor:
        pred = self.genotype.recurrent[i][1]
        c, h = self.gates(i, states[pred], h_mask)
        return self.highway(states[pred], c, self.activations[i](h))


class MixedCell(RecurrentCell):
    """Search cell: node ``i`` mixes every (predecessor, activation) under the plan's rule.

    SINGLE runs only the selected predecessor(s) and activation(s); ACTIVE runs the same forward,
    and the unselected predecessors' matrix products and activations in the backward pass, without
    autograd (the architecture gradient needs their values, not their backward); SOFTMAX (DARTS)
    runs everything with autograd. Each node's state is batch-normalised (no affine), as in DARTS'
    search cell; unlike DARTS, s0 is not (docs/rnn.md, "The space and the cell": with it, the
    validation perplexity of a default search went to NaN in eval mode).
    """

    def __init__(self, space: RecurrentSpace, emb_size: int, hidden_size: int, dropouts: Dropouts) -> None:
        super().__init__(emb_size, hidden_size, space.steps, range(1, space.steps + 1), dropouts)
        self.space = space
        self.activations = [ACTIVATIONS.get(a) for a in space.activations]
        self.bn = nn.BatchNorm1d(hidden_size, affine=False)

    def _candidates(self, s: Tensor, c: Tensor, h: Tensor) -> list:
        return [lambda f=f: self.highway(s, c, f(h)) for f in self.activations]

    def _rows(self, i: int, preds: list[int], states: list[Tensor], h_mask: Optional[Tensor], p: MixPlan) -> Optional[Tensor]:
        """Sum over ``preds`` of each row's ``mix`` (one batched matrix product for all of them)."""
        if not preds:
            return None
        stacked = torch.stack([states[j] for j in preds])
        c, h = self.gates(i, stacked, h_mask)
        out = None
        for n, j in enumerate(preds):
            term = mix(self._candidates(stacked[n], c[n], h[n]), p, self.space.row(i, j))
            if term is not None:
                out = term if out is None else out + term
        return out

    def _activated(self, s: Tensor, gates: tuple[Tensor, Tensor], f: Callable[[Tensor], Tensor]) -> Tensor:
        c, h = gates
        return self.highway(s, c, f(h))

    def _dropped_rows(self, i: int, preds: list[int], states: list[Tensor], h_mask: Optional[Tensor],
                      p: MixPlan) -> Optional[Tensor]:
        """The rows of predecessors no candidate of which is selected, under ``Active``: zero in
        the forward pass; their matrix product and activations run in the backward pass only, a
        predecessor at a time, for the gradient of their weights (``nasp.mixing.mix``)."""
        out = None
        for j in preds:
            s = states[j]
            gates = _shared(lambda s=s: self.gates(i, s, h_mask), uses=len(self.activations))
            candidates = [lambda f=f, s=s, g=gates: self._activated(s, g(), f) for f in self.activations]
            term = mix(candidates, p, self.space.row(i, j), like=s)
            out = term if out is None else out + term
        return out

    def node(self, i: int, states: list[Tensor], h_mask: Optional[Tensor], p: MixPlan) -> Tensor:
        preds = list(range(i + 1))
        if p.dense:
            out = self._rows(i, preds, states, h_mask, p)
        else:
            first = self.space.first_row(i)
            selected = [j for j in preds if p.active[first + j]]
            out = self._rows(i, selected, states, h_mask, p)
            if p.runs_inactive:  # the dropped edges: their weights' gradients only
                rest = self._dropped_rows(i, [j for j in preds if j not in selected], states, h_mask, p)
                if rest is not None:
                    out = rest if out is None else out + rest
        if out is None:  # every incoming edge dropped (the k=1 projection never does this)
            out = torch.zeros_like(states[0])
        return self.bn(out)


def _shared(fn: Callable[[], Any], uses: int) -> Callable[[], Any]:
    """``fn`` computed on the first call and kept, by the closure only, for the next ``uses - 1``
    calls (the candidates of one row, each called once per backward pass); then dropped."""
    cache: list = []
    calls = [0]

    def get() -> Any:
        if not cache:
            cache.append(fn())
        value = cache[0]
        calls[0] += 1
        if calls[0] >= uses:
            cache.clear()
            calls[0] = 0
        return value

    return get


class RecurrentLM(nn.Module):
    """Embedding -> recurrent cell -> (projection) -> tied decoder."""

    def __init__(self, vocab_size: int, emb_size: int, hidden_size: int, cell: RecurrentCell, dropouts: Dropouts) -> None:
        super().__init__()
        self.vocab_size, self.emb_size, self.hidden_size = vocab_size, emb_size, hidden_size
        self.dropouts = dropouts
        self.encoder = nn.Embedding(vocab_size, emb_size)
        self.cell = cell
        self.proj = nn.Linear(hidden_size, emb_size, bias=False) if hidden_size != emb_size else None
        self.decoder = nn.Linear(emb_size, vocab_size)
        self.decoder.weight = self.encoder.weight  # weight tying
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        self.cell.reset_parameters()
        if self.proj is not None:
            nn.init.uniform_(self.proj.weight, -INIT_RANGE, INIT_RANGE)
        for m in self.cell.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.reset_running_stats()

    def init_hidden(self, batch_size: int) -> Tensor:
        return self.encoder.weight.new_zeros(batch_size, self.hidden_size)

    def forward(self, tokens: Tensor, hidden: Tensor, arch: Any = None) -> tuple[Tensor, Tensor, Tensor]:
        """``tokens`` (T x B) -> (logits (T*B x V), last hidden (B x H), cell outputs (T x B x H))."""
        d = self.dropouts
        emb = embedded_dropout(self.encoder, tokens, d.embedding, self.training)
        emb = locked_dropout(emb, d.input, self.training)
        raw, hidden = self.cell(emb, hidden, arch)
        out = locked_dropout(raw, d.output, self.training)
        if self.proj is not None:
            out = self.proj(out)
        logits = self.decoder(out.reshape(-1, out.size(-1)))
        return logits, hidden, raw


class RecurrentModel(RecurrentLM):
    """The evaluation model: a fixed genotype (850 units by default in ``nasp rnn train``)."""

    def __init__(self, vocab_size: int, genotype: RecurrentGenotype, emb_size: int = 850, hidden_size: int = 850,
                 dropouts: Dropouts = TRAIN_DROPOUTS) -> None:
        super().__init__(vocab_size, emb_size, hidden_size, FixedCell(genotype, emb_size, hidden_size, dropouts), dropouts)
        self.genotype = genotype


class RNNSearchNetwork(SearchNetwork):
    """Search network of a recurrent space: one architecture tensor, (node, predecessor) rows x
    activation columns; the projection keeps one (predecessor, activation) per node (k=1)."""

    def __init__(self, vocab_size: int, space: RecurrentSpace, emb_size: int = 300, hidden_size: int = 300,
                 dropouts: Dropouts = SEARCH_DROPOUTS) -> None:
        super().__init__()
        self.space = space
        self.alpha = nn.Parameter(0.5 + 1e-3 * torch.randn(space.num_rows, len(space.activations)))
        self.lm = RecurrentLM(vocab_size, emb_size, hidden_size, MixedCell(space, emb_size, hidden_size, dropouts), dropouts)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def discretizers(self) -> list[prox.CellProjection]:
        return [prox.CellProjection(self.space.edges_per_node, k=1)]

    def init_hidden(self, batch_size: int) -> Tensor:
        return self.lm.init_hidden(batch_size)

    def forward(self, tokens: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.lm(tokens, hidden, plan(self.alpha, self.mixing))

    def reset_weights(self) -> None:
        self.lm.reset_parameters()

    def genotype(self, alphas: Optional[Sequence[Tensor]] = None) -> RecurrentGenotype:
        """Per node, the predecessor whose softmaxed row has the largest maximum, and that row's
        arg-max activation (REFERENCE §1, derivation with k=1)."""
        alpha = (alphas or self.arch_parameters())[0].detach().float().cpu()
        probs = torch.softmax(alpha, dim=-1)
        kept = prox.select_edges(probs.max(dim=-1).values, self.space.edges_per_node, 1)
        recurrent = []
        for i, rows in enumerate(kept):
            row = rows[0]
            recurrent.append((self.space.activations[int(probs[row].argmax())], row - self.space.first_row(i)))
        return RecurrentGenotype(tuple(recurrent), tuple(range(1, self.space.steps + 1)))

    def derive(self, alphas: Optional[Sequence[Tensor]] = None) -> dict:
        """DARTS' derivation (softmax rule) as JSON; NASP-like strategies use ``export``."""
        return self.genotype(alphas).to_json()

    def export(self, discrete: Sequence[Tensor], continuous: Optional[Sequence[Tensor]] = None) -> dict:
        """The genotype a projection prox_C1 (k=1) holds: per node, its non-zero row's
        predecessor and activation, the cell NASP trained and validated."""
        value = discrete[0].detach().cpu()
        recurrent = []
        for i in range(self.space.steps):
            first = self.space.first_row(i)
            rows = [r for r in range(first, first + i + 1) if value[r].amax() > 0]
            if len(rows) != 1:
                raise ValueError(f"node {i} of the projection keeps {len(rows)} edges, expected 1")
            recurrent.append((self.space.activations[int(value[rows[0]].argmax())], rows[0] - first))
        return RecurrentGenotype(tuple(recurrent), tuple(range(1, self.space.steps + 1))).to_json()

    def alphas_of(self, genotype: RecurrentGenotype) -> list[Tensor]:
        """Discrete architecture values holding ``genotype`` (the inverse of ``export``)."""
        value = torch.zeros_like(self.alpha.detach())
        for i, (act, pred) in enumerate(genotype.recurrent):
            value[self.space.row(i, pred), self.space.activations.index(act)] = 1.0
        return [value]


class LMLoss:
    """``loss(model, segment)``: cross entropy (+ temporal activation regularization), with the
    hidden state carried from segment to segment of each stream ("train", "valid").

    Carrying rule: segment ``k`` of a stream starts from the final state of the most recent
    evaluation of segment ``k - 1``; evaluating the same segment again (DARTS second order
    evaluates a batch several times per step) restarts from the same saved start state, so
    repeated evaluations never advance the stream. Segment 0 (every epoch or pass) starts from
    zeros, so a resumed run re-derives the states exactly. States are detached (truncated BPTT).
    """

    def __init__(self, tar: float = 0.0) -> None:
        self.tar = tar
        self._carry: dict[str, tuple[int, Tensor, Tensor]] = {}

    def start_state(self, model: nn.Module, seg: Segment) -> Tensor:
        entry = self._carry.get(seg.stream)
        if entry is not None and seg.index > 0:
            index, start, last = entry
            if seg.index == index:
                return start
            if seg.index == index + 1:
                return last
        return model.init_hidden(seg.inputs.size(1))

    def __call__(self, model: nn.Module, seg: Segment) -> Tensor:
        start = self.start_state(model, seg)
        logits, last, raw = model(seg.inputs, start)
        self._carry[seg.stream] = (seg.index, start, last.detach())
        loss = F.cross_entropy(logits, seg.targets.reshape(-1))
        if self.tar > 0 and model.training and raw.size(0) > 1:
            loss = loss + self.tar * (raw[1:] - raw[:-1]).pow(2).mean()
        return loss


def perplexity(nll: float) -> float:
    """exp(mean negative log-likelihood), capped so that a diverged run reads as a huge number."""
    return math.exp(min(float(nll), 700.0))


def segment_streams(seg: Any) -> int:
    """The streams (columns) of a segment: a rank's share of the batch in a data-parallel run."""
    return int(seg.inputs.size(1))


@torch.no_grad()
def evaluate_nll(model: nn.Module, data: Tensor, bptt: int, world: World = World()) -> float:
    """Mean negative log-likelihood per token of ``data`` (steps x batch), hidden carried across
    segments from zeros. The caller sets eval mode (and, for a search network, the mixing). In a
    data-parallel run each rank scores its share of the streams and the sums are added."""
    from .corpus import segments

    data = world.shard(data, 1)
    hidden = model.init_hidden(data.size(1))
    sums = torch.zeros(2, dtype=torch.float64, device=data.device)  # negative log-likelihood, tokens
    for seg in segments(data, bptt, "eval"):
        logits, hidden, _ = model(seg.inputs, hidden)
        sums[0] += F.cross_entropy(logits, seg.targets.reshape(-1), reduction="sum").double()
        sums[1] += seg.targets.numel()
    total, count = world.sum(sums).tolist()
    return total / max(count, 1)
