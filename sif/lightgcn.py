"""LightGCN (He et al., SIGIR 2020): embeddings propagated over the user-item graph, beside the searched models.

One table ``E`` holds a row per user and per item (layer 0). Each layer propagates it over the
training graph, ``E^(l+1) = D^-1/2 A D^-1/2 E^(l)`` (``A`` the symmetric user-item adjacency, ``D``
its degrees), and a node's final embedding is the mean of its layers ``0..K``; a (user, item)
score is the dot product of the two. It is trained by the pipeline's run loop (``pipeline.train``:
BPR against the task's negatives, early stopping on validation NDCG, checkpoints, resume) with
Adam, L2 on the batch's layer-0 rows, RecBole's dimension, batch size and layers, and a larger
learning rate (``LightGCNConfig.defaults``, ``DEFAULT_LAYERS``).

A training step propagates the whole graph (the gradient reaches every row a batch's nodes read);
evaluation (no gradients) propagates once and keeps the result while the table stands still.
A ranking model (``--task ranking``): it scores interactions, not ratings.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import ClassVar, Optional

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from nasp import SearchNetwork
from nasp.errors import NaspError

from .engine import TrainSettings

#: the model's name (``--ifc``, ``--baselines``, the summary's ``interaction``)
NAME = "lightgcn"
#: propagation layers K when ``--gcn-layers`` is not given: RecBole 1.2.1's ``n_layers`` (the paper's tuned value is 3)
DEFAULT_LAYERS = 2
#: the most layers ``--gcn-layers`` takes (each is one sparse product per step; the paper uses 1 to 4)
MAX_LAYERS = 10


def check_layers(layers: object) -> int:
    """``layers`` if it is a whole number in 1..``MAX_LAYERS``; else a one-line error."""
    if isinstance(layers, bool) or not isinstance(layers, (int, np.integer)) or not 1 <= layers <= MAX_LAYERS:
        raise NaspError(f"--gcn-layers {layers!r}: must be a whole number from 1 to {MAX_LAYERS} "
                        "(LightGCN's propagation layers)")
    return int(layers)


@dataclass
class LightGCNConfig:
    """Shape of a LightGCN model: the sizes, the embedding dimension and the layers K."""

    num_users: int
    num_items: int
    dim: int = 64
    layers: int = DEFAULT_LAYERS
    space: str = field(default=NAME, init=False)
    #: what the pipeline reads of a config: the model's name is its "interaction"; no implicit term
    ops: tuple = field(default=(NAME,), init=False)
    implicit: bool = field(default=False, init=False)
    #: Adam on batches of 2,048 positives (RecBole's ``train_batch_size``), L2 weight 1e-4 (the
    #: paper's code), lr 1e-2 where RecBole has 1e-3: on ml-100k (docs/sif.md) 1e-3 first lowers
    #: validation NDCG@10 for 3 epochs (0.146 to 0.128; early stopping ends the run there) and
    #: climbs for ~200 epochs (RecBole ran 201), while 1e-2 validates best at epoch ~21 at the
    #: same level (0.261; RecBole's 0.259). ``SIFOptions.train_settings`` reads these where the task's apply.
    defaults: ClassVar[dict] = {"lr": 1e-2, "reg": 1e-4, "implicit_reg": 0.0, "batch_size": 2048}

    def __post_init__(self) -> None:
        self.layers = check_layers(self.layers)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("ops")
        d.pop("implicit")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LightGCNConfig":
        try:
            return cls(int(d["num_users"]), int(d["num_items"]), int(d.get("dim", 64)), d.get("layers", DEFAULT_LAYERS))
        except (KeyError, TypeError, ValueError) as exc:
            raise NaspError(f"not a LightGCN model config ({exc.__class__.__name__}: {exc})") from None


def normalized_adjacency(users: np.ndarray, items: np.ndarray, num_users: int, num_items: int) -> sp.csr_matrix:
    """``D^-1/2 A D^-1/2`` of the (users + items) square graph whose edges are the pairs given (a
    pair given twice is one edge; a node without edges keeps a zero row)."""
    n = num_users + num_items
    x = sp.coo_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=(num_users, num_items)).tocsr()
    x.data[:] = 1.0
    a = sp.bmat([[None, x], [x.T, None]], format="csr", dtype=np.float32)
    degrees = np.asarray(a.sum(axis=1)).ravel()
    scale = np.zeros(n, dtype=np.float32)
    scale[degrees > 0] = degrees[degrees > 0] ** -0.5
    return (sp.diags(scale) @ a @ sp.diags(scale)).tocsr()


class LightGCNNetwork(SearchNetwork):
    """LightGCN's scores, with what the pipeline's training, evaluation, ``save_model`` and
    ``Recommender`` read of a network. The training pairs are kept as buffers (``edges``) and
    the normalised graph built from them (``set_history``, ``load_model_state``)."""

    #: the optimizer of the weights (``engine.make_problem``): Adam, as RecBole and the paper
    optimizer: ClassVar[type] = torch.optim.Adam
    #: no element-wise MLPs (what ``pipeline.train`` loads searched ones into)
    mlp_u: ClassVar[None] = None
    mlp_v: ClassVar[None] = None

    def __init__(self, config: LightGCNConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Parameter(torch.empty(config.num_users + config.num_items, config.dim))
        nn.init.xavier_uniform_(self.embedding)  # RecBole's initialisation of its two tables
        self.register_buffer("known_users", torch.ones(config.num_users, dtype=torch.bool))
        self.register_buffer("known_items", torch.ones(config.num_items, dtype=torch.bool))
        self.register_buffer("edges", torch.zeros(2, 0, dtype=torch.long))  # training (user, item) pairs
        self.register_buffer("graph", sparse_tensor(normalized_adjacency(np.zeros(0, np.int64), np.zeros(0, np.int64),
                                                                   config.num_users, config.num_items)), persistent=False)
        self._cache: Optional[tuple[tuple, Tensor]] = None

    def set_history(self, users: Tensor, items: Tensor) -> None:
        """The training graph: the (user, item) pairs of the training data."""
        self.edges = torch.stack([users, items]).long().to(self.embedding.device)
        self._build_graph()

    def _build_graph(self) -> None:
        users, items = self.edges.cpu().numpy()
        self.graph = sparse_tensor(normalized_adjacency(users, items, self.config.num_users, self.config.num_items)).to(
            self.embedding.device)
        self._cache = None

    def load_model_state(self, state: dict) -> None:
        """Load a saved state (its ``edges`` differ in length from a fresh network's) and build its
        graph; a ValueError for edges out of range."""
        self.edges = torch.empty_like(state["edges"])
        self.load_state_dict(state)
        users, items = self.edges
        if self.edges.numel() and (int(users.min()) < 0 or int(items.min()) < 0 or int(users.max()) >= self.config.num_users
                                   or int(items.max()) >= self.config.num_items):
            raise ValueError("the saved training pairs ('edges') are out of range")
        self._build_graph()

    def arch_parameters(self) -> list:
        return []

    def derive(self, alphas: Optional[list] = None) -> dict:
        """The architecture an epoch's metrics row logs: the model's name (nothing is searched)."""
        return {"interaction": self.config.ops[0]}

    def propagate(self) -> Tensor:
        """The mean of layers 0..K of the table propagated over the graph: [users + items, dim]."""
        layer, total = self.embedding, self.embedding
        for _ in range(self.config.layers):
            layer = _Propagate.apply(self.graph, layer)
            total = total + layer
        return total / (self.config.layers + 1)

    def final(self) -> tuple[Tensor, Tensor]:
        """(users' final embeddings, items' final embeddings): propagated at every call while
        gradients are on, else once while the table and the graph stand still."""
        if torch.is_grad_enabled():
            out = self.propagate()
        else:
            key = (self.embedding._version, self.embedding.data_ptr())  # a new graph drops the cache (``_build_graph``)
            if self._cache is None or self._cache[0] != key:
                self._cache = (key, self.propagate())
            out = self._cache[1]
        return out[: self.config.num_users], out[self.config.num_users :]

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """Scores of (user, item) index pairs (training path)."""
        u, v = self.final()
        return (u[users] * v[items]).sum(-1)

    def regularization(self, users: Tensor, items: Tensor) -> Tensor:
        """Sum of squared layer-0 entries of the batch's users and items (divided by the batch size)."""
        e = self.embedding
        return (e[users].pow(2).sum() + e[self.config.num_users + items].pow(2).sum()) / users.shape[0]

    @torch.no_grad()
    def score_all(self, users: Tensor, items: Optional[Tensor] = None) -> Tensor:
        """Scores [len(users), len(items)] (every item when ``items`` is None)."""
        u, v = self.final()
        return u[users] @ (v if items is None else v[items]).T

    @torch.no_grad()
    def predict(self, users: Tensor, items: Tensor) -> Tensor:
        """Scores of any pairs; 0 where the user or the item is unknown (-1)."""
        known = (users >= 0) & (items >= 0)
        scores = self(users.clamp_min(0), items.clamp_min(0))
        return torch.where(known, scores, torch.zeros_like(scores))


class _Propagate(torch.autograd.Function):
    """``graph @ x`` for a symmetric sparse ``graph``, whose backward is ``graph @ grad`` (no
    transpose: on ml-100k's graph a step's two layers forward and backward take 4x less time than
    torch's own backward of a sparse product, which transposes the matrix at every call)."""

    @staticmethod
    def forward(ctx, graph: Tensor, x: Tensor) -> Tensor:
        ctx.graph = graph
        return torch.sparse.mm(graph, x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor]:
        return None, torch.sparse.mm(ctx.graph, grad)


def sparse_tensor(matrix: sp.spmatrix) -> Tensor:
    """A scipy matrix as a torch sparse CSR tensor (float32): the fastest sparse product on a CPU."""
    csr = sp.csr_matrix(matrix)
    csr.sort_indices()
    with warnings.catch_warnings():  # "sparse CSR tensor support is in beta state": products are all it is used for
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(csr.indptr.astype(np.int64)), torch.from_numpy(csr.indices.astype(np.int64)),
                                       torch.from_numpy(csr.data.astype(np.float32)), csr.shape, check_invariants=True)
