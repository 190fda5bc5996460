"""The larger SIF space (``--space autocf``): every choice of the model one row of alphas.

After AutoCF (Gao, Yao et al., KDD 2021; REFERENCE §4), a model is

    score = mu + b_u + b_i + head(op(f_u(enc_u(u)), f_i(enc_i(i))))

with, per side, the input encoding ``enc`` (``INPUTS``: id embedding, history embedding, both)
and the element-wise function ``f`` (``FUNCTIONS``), then the vector-wise op (``VECTOR_OPS``)
and the prediction head (``PREDICTION_HEADS``). Each choice is one (1 x candidates) row of
alphas; the proximal step discretizes all rows together, and the network mixes each row with
the strategy's rule (``nasp.mixing``), so NASP, DARTS, GDAS and random search run unchanged.
A fixed model of the space is a ``JointConfig`` whose rows hold one candidate each
(``JointConfig.fixed``). Every op has one head per head candidate (their widths differ).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Callable, ClassVar, Optional, Sequence

import torch
from torch import Tensor, nn

from nasp import SearchNetwork, mix, plan
from nasp.errors import NaspError

from .graph import GraphInputs, graph_candidates
from .itemitem import ItemItemConfig, ItemItemNetwork
from .lightgcn import NAME as LIGHTGCN, LightGCNConfig, LightGCNNetwork
from .model import DATA_BUFFERS, HistoryEncoder, ModelConfig, SIFNetwork, table, with_choice
from .space import (BROADCAST_ELEMENTS, FUNCTIONS, GRAPH_INPUTS, INPUTS, JOINT_SPACES, MLP_FORMS, PREDICTION_HEADS, SPACES,
                    VECTOR_OPS, check_mlp, inherit, item_chunks)

#: the rows of the space in the order of ``arch_parameters``, row name -> ``JointConfig`` field
ROWS = {"user_input": "user_inputs", "item_input": "item_inputs", "user_function": "user_functions",
        "item_function": "item_functions", "op": "ops", "head": "heads"}


#: the default fixed model of the larger space: SVD++'s ``multiply`` (the paper's space's ``multiply``
#: baseline, the same model)
DEFAULT_CHOICES = {"user_input": "both", "item_input": "id", "user_function": "identity", "item_function": "identity",
                   "op": "multiply", "head": "box"}


#: the candidates that a local search swaps in computing what the candidate they replace computed
#: (``JointNetwork.swap_in`` at their initial weights): (row, candidate) -> the replaced candidate.
#: History factors start at zero, the residual element-wise MLP as the identity (``--mlp residual``),
#: ``id`` replacing ``both`` takes the side's history term into its id embedding (a row's history
#: is fixed, so its term is a constant vector per row),
#: ``weighted`` as the identity matrix with the replaced op's heads, a ``free`` head with the box
#: head's bounded vector; the graph and item-item encodings' gates at zero (``sif.graph``). Every
#: other swap changes the function (docs/sif.md, "Local search").
FUNCTION_PRESERVING = {("user_input", "both"): "id", ("item_input", "both"): "id",
                       ("user_input", "id"): "both", ("item_input", "id"): "both",
                       **{(f"{side}_input", name): "id" for side, names in GRAPH_INPUTS.items() for name in names},
                       ("user_function", "mlp"): "identity", ("item_function", "mlp"): "identity",
                       ("op", "weighted"): "multiply", ("head", "free"): "box"}


#: the candidates that are special cases of a richer candidate of their row: (row, richer) -> the
#: simpler ones (``JointNetwork.simpler``). Each function-preserving pair above is one (the richer
#: starts as the simpler); also ``both`` holds ``history`` (its id embedding at zero) and the
#: element-wise MLP imitates ``tanh`` and ``relu`` (approximately: one hidden layer per coordinate).
#: A local search keeps the simpler candidate when it scores within its margin of the richer one.
SIMPLER = {("user_input", "both"): ("id", "history"), ("item_input", "both"): ("id", "history"),
           **{(f"{side}_input", name): ("id",) for side, names in GRAPH_INPUTS.items() for name in names},
           ("user_function", "mlp"): ("identity", "tanh", "relu"), ("item_function", "mlp"): ("identity", "tanh", "relu"),
           ("op", "weighted"): ("multiply",), ("head", "free"): ("box",)}


def parse_choices(spec: str) -> dict[str, str]:
    """``row=name[+row=name...]`` (e.g. ``item_input=both+head=free``): the default fixed model
    with those choices changed; an unknown row is a clear error (unknown names: ``fixed``)."""
    out, given = dict(DEFAULT_CHOICES), set()
    for part in spec.split("+"):
        row, sep, name = part.partition("=")
        if not sep or row.strip() not in ROWS:
            raise NaspError(f"{spec!r}: a fixed model of the autocf space is ROW=NAME[+ROW=NAME...], rows: {', '.join(ROWS)}")
        if row.strip() in given:
            raise NaspError(f"{spec!r}: the row {row.strip()} is given twice")
        given.add(row.strip())
        out[row.strip()] = name.strip()
    return out


def check_choices(spec: str) -> dict[str, str]:
    """The choices of ``spec`` (``parse_choices``) with every candidate checked against the space."""
    choices = parse_choices(spec)
    JointConfig(1, 1).fixed(choices)  # an unknown candidate: a clear NaspError
    return choices


@dataclass
class JointConfig(ModelConfig):
    """Shape of a model of the larger space: ``ModelConfig``'s sizes, ``ops`` the vector-wise
    ops, and the candidates of every other row. ``implicit`` and ``elementwise`` follow from
    the rows (a history encoding on some side; an ``mlp`` function on some side); ``head`` is
    unused (the heads are a row)."""

    space: str = "autocf"
    user_inputs: tuple[str, ...] = ("both",)
    item_inputs: tuple[str, ...] = ("id",)
    user_functions: tuple[str, ...] = ("identity",)
    item_functions: tuple[str, ...] = ("identity",)
    heads: tuple[str, ...] = ("box",)
    ops: tuple[str, ...] = ("multiply",)

    CHECKS: ClassVar[dict] = {"user_input": INPUTS + GRAPH_INPUTS["user"], "item_input": INPUTS + GRAPH_INPUTS["item"],
                              "user_function": FUNCTIONS,
                              "item_function": FUNCTIONS, "op": VECTOR_OPS, "head": PREDICTION_HEADS}

    def __post_init__(self) -> None:
        for row, field in ROWS.items():
            names = tuple(getattr(self, field))
            setattr(self, field, names)
            if not names:
                raise NaspError(f"the {row} row of the search space has no candidate")
            for name in names:
                if name not in self.CHECKS[row]:
                    known = ", ".join(self.CHECKS[row] if isinstance(self.CHECKS[row], tuple) else self.CHECKS[row].names())
                    raise NaspError(f"unknown {row.replace('_', ' ')} {name!r}; known: {known}")
        check_mlp(self.mlp)
        if self.space not in JOINT_SPACES:
            raise NaspError(f"unknown search space {self.space!r} of a joint model; known: {', '.join(JOINT_SPACES)}")
        self.implicit = any(n in ("history", "both") for n in self.user_inputs + self.item_inputs)
        self.elementwise = "mlp" in self.user_functions + self.item_functions

    def rows(self) -> dict[str, tuple[str, ...]]:
        """Row name -> candidates, in the order of the network's alphas."""
        return {row: getattr(self, field) for row, field in ROWS.items()}

    def fixed(self, choices: dict[str, str]) -> "JointConfig":
        """The fixed model of this space with one candidate per row (``choices``: row -> name)."""
        unknown = sorted(set(choices) - set(ROWS))
        if unknown:
            raise NaspError(f"unknown row(s) {', '.join(map(str, unknown))} in an architecture of the autocf space; rows: {', '.join(ROWS)}")
        missing = sorted(set(ROWS) - set(choices))
        if missing:
            raise NaspError(f"an architecture of the autocf space needs a choice for every row; missing: {', '.join(missing)}")
        d = self.to_dict()
        d.update({ROWS[row]: [choices[row]] for row in ROWS})
        return JointConfig.from_dict(d)

    @classmethod
    def search_space(cls, base: ModelConfig, mlp: str, space: str = "autocf") -> "JointConfig":
        """The whole ``space`` (one of ``JOINT_SPACES``) with the sizes (users, items, dim,
        biases, mean) of ``base``."""
        rows = {ROWS[row]: names for row, names in SPACES[space].items()}
        return cls(space=space, num_users=base.num_users, num_items=base.num_items, dim=base.dim, mlp_hidden=base.mlp_hidden, mlp=mlp,
                   biases=base.biases, global_mean=base.global_mean, history_refreshes=base.history_refreshes,
                   mlp_on_valid=base.mlp_on_valid, **rows)

    def to_dict(self) -> dict:
        d = asdict(self)
        for field in ROWS.values():
            d[field] = list(d[field])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "JointConfig":
        known = {f.name for f in fields(cls)}
        d = {k: (tuple(v) if k in ROWS.values() else v) for k, v in d.items() if k in known}
        return cls(**d)


def config_from_dict(d: dict) -> ModelConfig:
    """The config a saved model or arch file describes: the paper's space (files written
    before ``--space`` existed included) or the larger one."""
    space = d.get("space", "sif")
    if space in JOINT_SPACES:
        return JointConfig.from_dict(d)
    if space == "itemitem":
        return ItemItemConfig.from_dict(d)
    if space == LIGHTGCN:
        return LightGCNConfig.from_dict(d)
    if space == "tensor":
        raise NaspError("a model of three-way data (sif/tensor/): use --ways 3")
    if space != "sif":
        raise NaspError(f"unknown search space {space!r}; known: {', '.join(SPACES)}")
    return ModelConfig.from_dict(d)


def fixed_state(search_state: dict, space: JointConfig, fixed: JointConfig) -> dict:
    """The part of a search network's state (of ``space``) that the network of ``fixed`` (one
    candidate per row) starts from when it retrains warm: the tables, biases and history
    factors, and the chosen candidates' weights (functions, op, head, graph gates) renamed to
    their place in the fixed network. Not the alphas, nor the buffers that describe the
    training data (``DATA_BUFFERS``: the fixed network keeps its own)."""
    index = {"user_functions": space.user_functions.index(fixed.user_functions[0]),
             "item_functions": space.item_functions.index(fixed.item_functions[0]),
             "ops": space.ops.index(fixed.ops[0])}
    head = space.heads.index(fixed.heads[0])
    gates = {f"graph.gates.{side}_{getattr(fixed, side + '_inputs')[0]}" for side in ("user", "item")}
    histories = {f"{side}_history" for side in ("user", "item") if getattr(fixed, side + "_inputs")[0] in ("history", "both")}
    out = {}
    for key, value in search_state.items():
        parts = key.split(".")
        if parts[0] == "alphas" or key in DATA_BUFFERS or parts[0] in ("mlp_u", "mlp_v"):  # mlp_u: user_functions[k]
            continue
        if parts[0] in ("user_history", "item_history") and parts[0] not in histories:
            continue
        if parts[0] in index:
            if int(parts[1]) != index[parts[0]]:
                continue
            parts[1] = "0"
        elif parts[0] == "heads":
            if int(parts[1]) != index["ops"] or int(parts[2]) != head:
                continue
            parts[1:3] = ["0", "0"]
        elif parts[0] == "graph" and parts[1] == "gates" and key not in gates:
            continue
        out[".".join(parts)] = value
    for side, alias in (("user", "mlp_u"), ("item", "mlp_v")):  # the fixed network's name of a chosen mlp too
        if getattr(fixed, f"{side}_functions")[0] == "mlp":
            prefix = f"{side}_functions.0."
            out.update({alias + "." + k[len(prefix):]: v for k, v in list(out.items()) if k.startswith(prefix)})
    return out


def network_for(config: ModelConfig) -> SIFNetwork:
    """The network of a config's space."""
    if isinstance(config, ItemItemConfig):
        return ItemItemNetwork(config)
    if isinstance(config, LightGCNConfig):
        return LightGCNNetwork(config)
    return JointNetwork(config) if isinstance(config, JointConfig) else SIFNetwork(config)


class JointNetwork(SIFNetwork):
    """The network of the larger space (see the module docstring). Tables a row never uses are
    not built: id embeddings without an ``id``/``both`` candidate on that side, history encoders
    without a ``history``/``both`` candidate, element-wise MLPs without ``mlp``."""

    default_choices = DEFAULT_CHOICES

    def __init__(self, config: JointConfig) -> None:
        SearchNetwork.__init__(self)
        self.config = config
        k, residual = config.dim, MLP_FORMS[config.mlp]
        rows = config.rows()
        uses = lambda row, *names: any(n in rows[row] for n in names)  # noqa: E731
        self.user_emb = table(config.num_users, k)
        self.item_emb = table(config.num_items, k)
        graph = {side: graph_candidates(side, rows[f"{side}_input"]) for side in ("user", "item")}
        self.uses_id = {side: uses(f"{side}_input", "id", "both", *graph[side]) for side in ("user", "item")}
        self.user_bias = table(config.num_users, 1)
        self.item_bias = table(config.num_items, 1)
        self.global_bias = nn.Parameter(torch.tensor(float(config.global_mean)))
        refreshes = config.history_refreshes
        self.user_history = (HistoryEncoder(config.num_users, config.num_items, k, refreshes)
                             if uses("user_input", "history", "both") else None)
        self.item_history = (HistoryEncoder(config.num_items, config.num_users, k, refreshes)
                             if uses("item_input", "history", "both") else None)
        self.graph = GraphInputs(config.num_users, config.num_items, graph, refreshes) if any(graph.values()) else None
        if self.graph is not None:  # its refreshes hand the tables a dense gradient
            self.user_emb.sparse = self.item_emb.sparse = False
        self.user_functions = nn.ModuleList(FUNCTIONS.get(n)(config.mlp_hidden, residual) for n in config.user_functions)
        self.item_functions = nn.ModuleList(FUNCTIONS.get(n)(config.mlp_hidden, residual) for n in config.item_functions)
        self.mlp_u = self._mlp(self.user_functions, config.user_functions)
        self.mlp_v = self._mlp(self.item_functions, config.item_functions)
        self.ops = nn.ModuleList(VECTOR_OPS.get(n)(k) for n in config.ops)
        self.heads = nn.ModuleList(
            nn.ModuleList(PREDICTION_HEADS.get(h)(k * op.width_factor) for h in config.heads) for op in self.ops)
        self.alphas = nn.ParameterDict({
            row: nn.Parameter(torch.ones(1, 1) if len(names) == 1 else 0.5 + 1e-3 * torch.randn(1, len(names)))
            for row, names in rows.items()})
        self.register_buffer("known_users", torch.ones(config.num_users, dtype=torch.bool))
        self.register_buffer("known_items", torch.ones(config.num_items, dtype=torch.bool))
        self.register_buffer("rating_range", torch.tensor([-float("inf"), float("inf")]))
        self.reset_embeddings()

    @staticmethod
    def _mlp(modules: nn.ModuleList, names: Sequence[str]) -> Optional[nn.Module]:
        return modules[list(names).index("mlp")] if "mlp" in names else None

    def reset_weights(self) -> None:
        self.reset_embeddings()
        for module in [*self.ops, *self.heads.modules(), *self.user_functions, *self.item_functions]:
            if hasattr(module, "reset_parameters") and not isinstance(module, (nn.ModuleList, nn.Linear)):
                module.reset_parameters()

    # the SearchNetwork contract ---------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas[row] for row in ROWS]

    def arch_extra_parameters(self) -> list[nn.Parameter]:
        """With ``mlp_on_valid``, the searched element-wise MLPs (trained on validation data with
        alpha, as in the paper's space); else none: they are weights."""
        return self.exported_weights() if self.config.mlp_on_valid else []

    def exported_weights(self) -> list[nn.Parameter]:
        """The element-wise MLPs of the sides whose function row is searched (a fixed ``mlp`` is
        a plain weight)."""
        searched = {"user": len(self.config.user_functions) > 1, "item": len(self.config.item_functions) > 1}
        return [w for side, mlp in (("user", self.mlp_u), ("item", self.mlp_v)) if mlp is not None and searched[side]
                for w in mlp.parameters()]

    def search_rows(self) -> dict[str, tuple[str, ...]]:
        return self.config.rows()

    def swap_in(self, architecture: Sequence[Tensor], tensor: int, row: int,
                column: int) -> list[tuple[nn.Parameter, nn.Parameter]]:
        """A new op takes the heads of the op it replaces, a new head the head it replaces (of the
        chosen op), where their shapes match (``inherit``); the other rows' candidates start as
        their initial weights make them (``FUNCTION_PRESERVING``)."""
        names = list(ROWS)
        chosen = {r: int(a[0].argmax()) for r, a in zip(names, architecture)}
        if names[tensor] in ("user_input", "item_input"):
            candidates = self.config.rows()[names[tensor]]
            if (candidates[chosen[names[tensor]]], candidates[column]) == ("both", "id"):
                self._fold_history(names[tensor].split("_")[0])
            return []
        if names[tensor] == "op":
            return [pair for src, dst in zip(self.heads[chosen["op"]], self.heads[column]) for pair in inherit(src, dst)]
        if names[tensor] == "head":
            return inherit(self.heads[chosen["op"]][chosen["head"]], self.heads[chosen["op"]][column])
        return []

    def simpler(self, tensor: int, row: int, column: int, than: int) -> bool:
        """Whether candidate ``column`` is a special case of candidate ``than`` (``SIMPLER``)."""
        name = list(ROWS)[tensor]
        names = self.config.rows()[name]
        return names[column] in SIMPLER.get((name, names[than]), ())

    @torch.no_grad()
    def _fold_history(self, side: str) -> None:
        """``id`` replaces ``both`` on ``side``: every row's history term (what the evaluation
        adds) joins its id embedding, so the side's vectors stay as they were."""
        table = self.user_emb if side == "user" else self.item_emb
        history = self.user_history if side == "user" else self.item_history
        table.weight.add_(history.cached_sums()[: table.num_embeddings].to(table.weight.dtype))

    def derive(self, alphas: Optional[Sequence[Tensor]] = None) -> dict:
        return self._report(alphas or self.arch_parameters(), alphas or self.arch_parameters())

    def export(self, discrete: Sequence[Tensor], continuous: Optional[Sequence[Tensor]] = None) -> dict:
        """The choices a projection holds, reported with the continuous values they came from."""
        return self._report(discrete, continuous if continuous is not None else discrete)

    def _report(self, chosen: Sequence[Tensor], values: Sequence[Tensor]) -> dict:
        rows = self.config.rows()
        choices = {row: names[int(a.detach()[0].argmax())] for (row, names), a in zip(rows.items(), chosen)}
        alpha, probs = {}, {}
        for (row, names), a in zip(rows.items(), values):
            a = a.detach().float()[0]
            p = torch.softmax(a, dim=-1)
            for name, x, y in zip(names, a, p):
                alpha[f"{row}:{name}"], probs[f"{row}:{name}"] = round(float(x), 6), round(float(y), 6)
        return {"interaction": choices["op"], "choices": choices, "alpha": alpha, "probabilities": probs}

    def logged_alphas(self, logged: dict) -> list[Tensor]:
        """The alphas of a metrics row's ``architecture``, each row's arg-max its logged choice."""
        return [with_choice([logged["alpha"][f"{row}:{n}"] for n in names], names, logged["choices"][row])
                for row, names in self.config.rows().items()]

    # forward ----------------------------------------------------------------------------------
    def _side(self, side: str, ids: Tensor) -> Tensor:
        """The mix of a side's input encodings (id, history, both) for ``ids``."""
        table = self.user_emb if side == "user" else self.item_emb
        history = self.user_history if side == "user" else self.item_history
        memo: dict = {}

        def once(key: str, fn: Callable[[], Tensor]) -> Tensor:
            # candidates run with and without autograd under NASP's rule: keep one of each
            slot = (key, torch.is_grad_enabled())
            if slot not in memo:
                memo[slot] = fn()
            return memo[slot]

        e = lambda: once("id", lambda: table(ids))  # noqa: E731
        h = lambda: once("history", lambda: history(ids))  # noqa: E731
        candidates = {"id": e, "history": h, "both": lambda: e() + h()}
        names = self.config.user_inputs if side == "user" else self.config.item_inputs
        for name in graph_candidates(side, names):
            candidates[name] = lambda name=name: e() + self.graph(side, name, ids, self.user_emb.weight, self.item_emb.weight)
        out = mix([candidates[n] for n in names], plan(self.alphas[f"{side}_input"], self.mixing), 0)
        return out if out is not None else table(ids).new_zeros(ids.shape[0], self.config.dim)

    def embed(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        return self._side("user", users), self._side("item", items)

    def elementwise(self, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """The mix of each side's element-wise functions."""
        out = []
        for x, functions, row in ((u, self.user_functions, "user_function"), (v, self.item_functions, "item_function")):
            y = mix([lambda f=f: f(x) for f in functions], plan(self.alphas[row], self.mixing), 0)
            out.append(y if y is not None else torch.zeros_like(x))
        return out[0], out[1]

    def _mix_ops(self, score: Callable[[nn.Module, nn.Module], Tensor], zeros: Callable[[], Tensor]) -> Tensor:
        """sum over ops o and heads h of alpha_o * beta_h * score(op_o, head_h), under the rule."""
        head_plan = plan(self.alphas["head"], self.mixing)

        def op_term(k: int) -> Callable[[], Tensor]:
            def run() -> Tensor:
                out = mix([lambda h=h: score(self.ops[k], h) for h in self.heads[k]], head_plan, 0)
                return out if out is not None else zeros()
            return run

        out = mix([op_term(k) for k in range(len(self.ops))], plan(self.alphas["op"], self.mixing), 0)
        return out if out is not None else zeros()

    def interaction(self, u: Tensor, v: Tensor) -> Tensor:
        p, q = self.elementwise(u, v)
        memo: dict = {}

        def score(op: nn.Module, head: nn.Module) -> Tensor:
            slot = (id(op), torch.is_grad_enabled())
            if slot not in memo:  # each op's vector once, shared by its heads
                memo[slot] = op(p, q)
            return head(memo[slot])

        return self._mix_ops(score, lambda: u.new_zeros(u.shape[0]))

    def score_all(self, users: Tensor, items: Optional[Tensor] = None,
                  max_elements: int = BROADCAST_ELEMENTS) -> Tensor:
        """Raw scores [len(users), len(items)] equal to ``forward`` on every pair (see
        ``SIFNetwork.score_all``): a linear head over a decomposing op is a matrix product, any
        other pair is broadcast over chunks of items."""
        if items is None:
            items = torch.arange(self.config.num_items, device=users.device)
        p, q = self.elementwise(*self.embed(users, items))

        def score(op: nn.Module, head: nn.Module) -> Tensor:
            w = head.vector()
            out = op.linear_matrix(p, q, w) if w is not None else None
            if out is not None:
                return out
            num_users, k = p.shape
            width = k * op.width_factor

            def block(cols: slice) -> Tensor:
                qc = q[cols]
                return head(op(p.unsqueeze(1).expand(num_users, qc.shape[0], k), qc.unsqueeze(0).expand(num_users, -1, -1)))

            return item_chunks(p, q, width, block, max_elements)

        return self.with_biases(self._mix_ops(score, lambda: p.new_zeros(p.shape[0], q.shape[0])), users, items)

    def regularization(self, users: Tensor, items: Tensor) -> Tensor:
        """Sum of squared id embeddings (of the sides that use them) and biases of the batch rows,
        divided by the batch size."""
        reg = self.global_bias.new_zeros(())
        if self.uses_id["user"]:
            reg = reg + self.user_emb(users).pow(2).sum()
        if self.uses_id["item"]:
            reg = reg + self.item_emb(items).pow(2).sum()
        if self.config.biases:
            reg = reg + self.user_bias(users).pow(2).sum() + self.item_bias(items).pow(2).sum()
        return reg / users.shape[0]

    def implicit_regularization(self, users: Tensor, items: Tensor) -> Tensor:
        """Sum of squared history factors: the batch items' (user side's encoder) and the batch
        users' (item side's), divided by the batch size."""
        reg = self.global_bias.new_zeros(())
        if self.user_history is not None:
            reg = reg + self.user_history.regularization(items)
        if self.item_history is not None:
            reg = reg + self.item_history.regularization(users)
        return reg / users.shape[0]

    # the graph inputs' data and pending gradient ------------------------------------------------
    def set_history(self, users: Tensor, items: Tensor) -> None:
        """The history encoders' N(u), N(i) and the graph inputs' training graph."""
        super().set_history(users, items)
        if self.graph is not None:
            self.graph.set_edges(users, items)

    def load_model_state(self, state: dict) -> None:
        """``SIFNetwork.load_model_state``, with the graph inputs' saved training pairs."""
        if self.graph is not None and "graph.edges" in state:
            self.graph.edges = torch.empty_like(state["graph.edges"])
        super().load_model_state(state)
