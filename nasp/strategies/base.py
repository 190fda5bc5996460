"""One lifecycle for every search method (NASLib style).

A domain describes its search as a ``SearchProblem``; a strategy (NASP, DARTS, random, ...)
drives it. The run loop (``nasp.loop.RunLoop``) only ever calls::

    strategy.begin_epoch(epoch)
    for train_batch, valid_batch in ...: strategy.step(train_batch, valid_batch)
    with strategy.evaluation(): metrics = problem.evaluate(network)
    strategy.end_epoch(epoch, metrics)
    strategy.export(); strategy.state_dict(); strategy.load_state_dict(...)

A strategy owns how the network mixes its candidates: it sets a ``nasp.mixing`` rule around
every forward pass (``network.using(rule)``), so a new method is a new strategy file.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager, nullcontext
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, ContextManager, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..architect import Regularizer, assigned
from ..config import check_rate
from ..distributed import World, world
from ..mixing import MixingRule, Selection, SinglePath
from ..network import SearchNetwork

log = logging.getLogger("nasp")

OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer, int], Any]


def batch_examples(batch: Any) -> int:
    """The examples in a batch: the length of its first tensor (a tuple's first item)."""
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(first.shape[0]) if isinstance(first, Tensor) else len(first)


@dataclass
class SearchOptions:
    """Options that only some strategies read. ``None`` means "not given": the strategy that
    reads the option uses its own default, and the others ignore it.

    Attributes:
        seed: seed of the strategies' own random streams (sampled architectures).
        warmup_epochs: NASP warm-up epochs before the architecture moves (a count or "auto").
        candidates: random search: architectures tried.
        unrolled: DARTS second order: how the unrolled weight step is taken.
        margin: local search: the relative margin by which a replacement must beat the incumbent.
        trial_fraction: local search: the part of an epoch each trial trains.
        confirm: local search: trials more that a row step's winning change and the stay each
            train before the change replaces the incumbent.
        warmup_path: NASP: what its warm-up trains, "sampled" (a uniformly random architecture
            per step) or "default" (the network's default architecture, then every candidate
            starts from the default's weights where the network allows: ``swap_in``).
    """

    seed: int = 0
    warmup_epochs: Union[int, str, None] = None
    candidates: Optional[int] = None
    unrolled: Optional[str] = None
    margin: Optional[float] = None
    trial_fraction: Optional[float] = None
    confirm: Optional[int] = None
    warmup_path: Optional[str] = None

    @classmethod
    def of(cls, value: Union["SearchOptions", dict, None]) -> "SearchOptions":
        """Options from a ``SearchOptions``, a dict of its fields (unknown keys raise) or None."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown search options {unknown}; known: {sorted(known)}")
        return cls(**value)

    def get(self, name: str, default: Any = None) -> Any:
        """The option's value, or ``default`` when it was not given."""
        value = getattr(self, name)
        return default if value is None else value

    def given(self) -> list[str]:
        """Names of the options that were given (seed excluded: every strategy may read it)."""
        return [f.name for f in dataclasses.fields(self) if f.name != "seed" and getattr(self, f.name) is not None]


@dataclass
class SearchProblem:
    """Everything a strategy needs from a domain.

    Attributes:
        network: the search network.
        loss: ``loss(network, batch) -> scalar`` for a training or validation batch.
        weight_optimizer: builds the optimizer of the weights from a parameter list.
        scheduler: builds the weights' LR scheduler from (optimizer, epochs); stepped per epoch.
        metric: the key of ``evaluate``'s result used to compare architectures.
        higher_is_better: direction of ``metric``.
        grad_clip: max grad norm of the weight step (None: no clipping).
        arch_lr, arch_betas, arch_weight_decay: Adam settings of the architecture step.
        regularizer, eta: model-size term added at the discrete point (NASP only).
        options: strategy-specific options (``SearchOptions``; a dict of its fields is converted).
        examples: ``examples(batch) -> int``, this rank's examples in a batch: the weight of its
            gradients when a data-parallel run averages them (default: the first tensor's length).
        world: the ranks of a data-parallel run (``nasp.distributed``; default: torch's process
            group when torchrun started one, else one process).
    """

    network: SearchNetwork
    loss: Callable[[SearchNetwork, Any], Tensor]
    weight_optimizer: OptimizerFactory
    scheduler: Optional[SchedulerFactory] = None
    metric: str = "valid_loss"
    higher_is_better: bool = False
    grad_clip: Optional[float] = None
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    regularizer: Optional[Regularizer] = None
    eta: float = 0.0
    options: SearchOptions = field(default_factory=SearchOptions)
    examples: Callable[[Any], int] = batch_examples
    world: World = field(default_factory=world)

    def __post_init__(self) -> None:
        self.options = SearchOptions.of(self.options)
        check_rate("arch_lr (--arch-lr)", self.arch_lr)  # a huge rate overflowed inside torch's Adam

    def better(self, a: float, b: Optional[float]) -> bool:
        """Whether score ``a`` beats ``b``: ``None`` or NaN (an evaluation that blew up) is beaten
        by any number, and NaN beats nothing."""
        if a != a:  # NaN
            return False
        if b is None or b != b:
            return True
        return a > b if self.higher_is_better else a < b

    def beats(self, a: float, b: float, tolerance: float) -> bool:
        """Whether score ``a`` beats ``b`` by more than the fraction ``tolerance`` of ``|b|``."""
        margin = tolerance * abs(b)
        return self.better(a, b + margin if self.higher_is_better else b - margin)


class Strategy(ABC):
    """Base of every search method. Subclasses implement ``step`` (and maybe more hooks)."""

    #: whether ``step`` reads the validation batch (the run loop skips fetching it otherwise)
    uses_valid_batch: bool = True
    #: False for strategies that train a given architecture instead of searching one
    searches: bool = True
    #: the ``SearchOptions`` (and ``"eta"``: the model-size term) this strategy reads; the run
    #: warns about a given option that the strategy ignores
    reads: ClassVar[frozenset[str]] = frozenset()
    #: whether the strategy reads ``warmup_epochs`` (set from ``reads``)
    uses_warmup: ClassVar[bool] = False
    #: whether ``export`` already returns the architecture that scored best on validation
    selects_on_validation: bool = False
    #: whether the architecture step also backpropagates losses to the weights (DARTS' unrolled
    #: step): a network that defers weight gradients across steps must then take its exact path
    unrolls_weights: ClassVar[bool] = False
    #: what the validation metrics of an epoch score: "discrete architecture" (the exported
    #: one) or "supernet" (DARTS: the softmax mixture, not the derived cell)
    validates: ClassVar[str] = "discrete architecture"
    #: the fewest training steps an epoch should have for this strategy's decisions (a domain
    #: warns below it); 0: no such need
    min_epoch_steps: ClassVar[int] = 0
    #: the warm-up epochs (``warmup_epochs``) a domain gives this strategy when none is given;
    #: None: the domain's own default
    default_warmup: ClassVar[Optional[int]] = None
    #: the search epochs a domain gives this strategy when none are given (None: the domain's own
    #: default); local search needs about one epoch per candidate of each row for a pass
    default_epochs: ClassVar[Optional[int]] = None
    #: set by a strategy that has nothing left to search: the run loop stops after this epoch
    finished: bool = False
    #: the domains whose networks this strategy can search ("cnn", "rnn", "sif"; "core": a
    #: network of your own, as in examples/feature_transform.py); None: every one. A command of
    #: another domain refuses it by name (``check_search_strategy``), saying ``domain_note``
    domains: ClassVar[Optional[frozenset[str]]] = None
    #: why the strategy searches only ``domains`` (one sentence, for the refusal)
    domain_note: ClassVar[str] = ""
    #: whether the network must weight every edge of its cells by a learned edge weight
    #: (PC-DARTS' edge normalisation): a domain that offers it builds its network with it
    edge_normalization: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.uses_warmup = "warmup_epochs" in cls.reads

    @classmethod
    def ignored_options(cls, problem: SearchProblem) -> list[str]:
        """The given options of ``problem`` that this strategy does not read."""
        given = problem.options.given() + (["eta"] if problem.eta > 0 else [])
        return [name for name in given if name not in cls.reads]

    def __init__(self, problem: SearchProblem, epochs: int) -> None:
        self.problem = problem
        self.network = problem.network
        self.epochs = epochs
        self.world = problem.world
        self.weight_params = self._weight_params()
        self.weight_optimizer = problem.weight_optimizer(self.weight_params)
        self.scheduler = problem.scheduler(self.weight_optimizer, epochs) if problem.scheduler else None
        #: (the alphas' version counters, their non-zero entries on the host): see ``single_path``
        self._held: Optional[tuple[tuple[int, ...], Selection]] = None

    def _weight_params(self) -> list[nn.Parameter]:
        return self.network.weights()

    # lifecycle ------------------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        """Called before the first step of every epoch."""

    def epoch_batches(self, epoch: int, batches: Any) -> Any:
        """The training batches this epoch steps through, of the loop's ``batches`` for it
        (called after ``begin_epoch``); default: all of them (a local search's shorter trials
        take the first part)."""
        return batches

    @abstractmethod
    def step(self, train_batch: Any, valid_batch: Any) -> dict[str, Tensor]:
        """One search iteration; returns detached scalar tensors to log (no host sync)."""

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Called after evaluation of every epoch; steps the weights' LR schedule."""
        self.forget_selection()
        if self.scheduler is not None:
            self.scheduler.step()

    def describe(self) -> dict:
        """Extra fields for this epoch's metrics row (e.g. random search's candidate index)."""
        return {}

    @contextmanager
    def evaluation(self) -> Iterator[None]:
        """Sets the network up to evaluate the current architecture (eval mode, no grad)."""
        was_training = self.network.training
        self.network.eval()
        try:
            with torch.no_grad(), self._eval_architecture():
                yield
        finally:
            self.network.train(was_training)

    @contextmanager
    def _eval_architecture(self) -> Iterator[None]:
        """Default: evaluate the discrete architecture the alphas hold, single path."""
        with self.mixing(self.single_path()):
            yield

    def mixing(self, rule: MixingRule) -> ContextManager:
        """``network.using(rule)``; nothing for a plain module (no candidates to mix)."""
        return self.network.using(rule) if isinstance(self.network, SearchNetwork) else nullcontext()

    def derive_alphas(self) -> list[Tensor]:
        """The architecture values the final architecture is read from (default: the current ones)."""
        return [a.detach().clone() for a in self.network.arch_parameters()]

    def architecture_of(self, alphas: Sequence[Tensor]) -> Any:
        """The JSON-able architecture this strategy reads from architecture values. Default
        (NASP, random, fixed): the network's export of their discrete projection prox_C1, i.e.
        the very cell that the weight steps and the evaluation ran."""
        return self.network.export(self.network.project(alphas), alphas)

    def projected_values(self, alphas: Sequence[Tensor]) -> list[Tensor]:
        """The values whose projection is the exported architecture under a budget (default: the
        alphas themselves; DARTS: their per-row softmax)."""
        return list(alphas)

    def budget_binding(self) -> Optional[bool]:
        """Whether the network's budget changed the exported architecture: the unconstrained
        projection of the values it was read from costs more than the limit (None: no budget)."""
        budget = self.network.budget if isinstance(self.network, SearchNetwork) else None
        if budget is None:
            return None
        return budget.binding(self.projected_values(self.derive_alphas()))

    def evaluated_architecture(self) -> Any:
        """The architecture of the current values: what this epoch trained and validated (the
        ``architecture`` of its metrics row)."""
        return self.architecture_of([a.detach() for a in self.network.arch_parameters()])

    def export(self) -> Any:
        """The final architecture (``arch.json``): that of ``derive_alphas()`` (the current
        values, or the best-validated ones for a strategy that selects on validation)."""
        return self.architecture_of(self.derive_alphas())

    def state_dict(self) -> dict:
        state = {"weight_optimizer": self.weight_optimizer.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.forget_selection()
        self.weight_optimizer.load_state_dict(state["weight_optimizer"])
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])

    # shared pieces --------------------------------------------------------------------------
    def forget_selection(self) -> None:
        """Drop the choice ``single_path()`` holds, so that the next one reads the alphas again."""
        self._held = None

    def single_path(self) -> SinglePath:
        """A single-path rule over the architecture the alphas hold now, for strategies whose
        alphas stay put through an epoch (fixed training, random search, evaluation). Which
        candidates are non-zero is read on the host once and held until the epoch ends, the state
        is loaded, or an alpha is written (its version counter moves): on a GPU, one
        device-to-host copy an epoch instead of one a forward pass. A write that the version
        counters do not see (``.data``, a collective) needs ``forget_selection()``."""
        if not isinstance(self.network, SearchNetwork):
            return SinglePath()
        alphas = self.network.arch_parameters()
        versions = tuple(a._version for a in alphas)
        if self._held is None or self._held[0] != versions:
            self._held = (versions, Selection(alphas))
        return SinglePath(self._held[1])

    def weight_step(self, batch: Any, rule: MixingRule) -> Tensor:
        """One optimizer step of the weights on ``batch`` mixed under ``rule``; returns the loss."""
        params = [p for p in self.weight_params if p.requires_grad]
        with self.mixing(rule), differentiating_only(self.network, params):
            loss = self.problem.loss(self.network, batch)
        # gradients of the weights only: alphas and architecture extras (e.g. SIF's element-wise
        # MLPs) are not differentiated here; unused weights (unselected ops) get None
        return self.step_weights(params, torch.autograd.grad(loss, params, allow_unused=True), batch, loss.detach())

    def step_weights(self, params: Sequence[nn.Parameter], grads: Sequence[Optional[Tensor]], batch: Any,
                     loss: Tensor) -> Tensor:
        """The weight optimizer's step on ``grads`` of ``params`` (averaged over the ranks of a
        data-parallel run, clipped to the problem's norm); returns ``loss`` as the whole batch's."""
        for p, g in zip(params, grads):
            p.grad = g
        loss = self.sync_gradients(params, batch, loss)
        if self.problem.grad_clip:
            clip_grad_norm([p for p in params if p.grad is not None], self.problem.grad_clip)
        # torch's default, said explicitly: its optimizers' sparse steps (Adagrad on SIF's large
        # tables) then skip the invariant checks without a warning to every user of the library
        with torch.sparse.check_sparse_tensor_invariants(enable=False):
            self.weight_optimizer.step()
        return loss

    @contextmanager
    def evaluating(self, values: Optional[Sequence[Tensor]] = None) -> Iterator[None]:
        """The network runs the discrete architecture ``values`` (default: the projection of the
        alphas) single path, each chosen candidate with weight 1 (the alphas hold ``values``
        meanwhile): how the sampling and distribution methods evaluate and run an architecture."""
        alphas = self.network.arch_parameters()
        values = self.network.project() if values is None else values
        with assigned(alphas, values), self.network.using(SinglePath(Selection(alphas, values))):
            yield

    def project_values(self, alphas: Sequence[Tensor]) -> list[Tensor]:
        """The projection of ``projected_values(alphas)`` (a strategy's continuous weights), on
        the alphas' devices and dtypes."""
        return self.network.project([v.to(a) for v, a in zip(self.projected_values(alphas), alphas)])

    def sync_gradients(self, params: Sequence[nn.Parameter], batch: Any, loss: Optional[Tensor] = None) -> Optional[Tensor]:
        """In a data-parallel run, the gradients of ``params`` averaged over the ranks, each
        weighted by its share of ``batch`` (nothing in one process). Call before every step.
        Returns ``loss`` (this rank's mean loss on its share, detached) as the whole batch's mean,
        averaged in the same collective: every rank logs what one process would."""
        if not self.world.parallel:
            return loss
        params = list(params)
        averaged = self.synced([p.grad for p in params], params, batch, loss)
        for p, g in zip(params, averaged[: len(params)]):
            p.grad = g
        return averaged[-1] if loss is not None else None

    def synced(self, grads: Sequence[Optional[Tensor]], like: Sequence[Tensor], batch: Any,
               loss: Optional[Tensor] = None) -> list[Optional[Tensor]]:
        """``sync_gradients`` for gradients held in a list (DARTS' unrolled step); with ``loss``,
        its whole-batch mean is appended to the list."""
        grads, like = list(grads), list(like)
        if loss is not None:
            grads, like = grads + [loss.reshape(())], like + [loss.reshape(())]
        return self.world.average(grads, like, self.problem.examples(batch)) if self.world.parallel else grads

    def current_lr(self) -> float:
        return float(self.weight_optimizer.param_groups[0]["lr"])


@contextmanager
def differentiating_only(network: nn.Module, params: Sequence[nn.Parameter]) -> Iterator[None]:
    """The forward pass inside records a graph for ``params`` only: the network's other trainable
    parameters (alphas, architecture extras) are frozen meanwhile, so ops that see frozen weights
    take their cheaper paths (e.g. SIF's element-wise MLPs keep only their slope). Not nested:
    a wanted parameter that an outer call froze stays frozen."""
    wanted = {id(p) for p in params}
    others = [p for p in network.parameters() if p.requires_grad and id(p) not in wanted]
    try:
        for p in others:
            p.requires_grad_(False)
        yield
    finally:
        for p in others:
            p.requires_grad_(True)


def clip_grad_norm(params: Sequence[nn.Parameter], max_norm: float) -> Tensor:
    """``nn.utils.clip_grad_norm_`` (2-norm over all gradients, scaled in place by
    min(1, max_norm / (norm + 1e-6))) that also takes sparse gradients (``nn.Embedding(sparse=True)``):
    each is coalesced first (rows looked up twice summed, as the dense gradient holds them),
    stored back as ``p.grad``, and counts by its values. Only dense gradients: exactly
    ``clip_grad_norm_``. Returns the total norm."""
    with_grad = [p for p in params if p.grad is not None]
    if not any(p.grad.is_sparse for p in with_grad):
        return nn.utils.clip_grad_norm_(with_grad, max_norm)
    values = []
    for p in with_grad:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            values.append(p.grad._values())
        else:
            values.append(p.grad)
    device = values[0].device
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(v).to(device) for v in values]))
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for v in values:
        v.mul_(coef.to(v.device))
    return total


def sample_architecture(network: SearchNetwork, generator: torch.Generator) -> list[Tensor]:
    """A uniformly random discrete architecture of the network's projection: each tensor's
    discretizer applied to U(0,1) noise (so cells keep their top-k structure), or, under a
    budget, a cell drawn uniformly among those that fit it. On the host, in the alphas' dtypes
    (assigning them to the alphas copies them to their device; ``Selection(alphas, values)``
    reads them without a device-to-host copy)."""
    alphas = network.arch_parameters()
    values = network.projection().sample([a.shape for a in alphas], generator)
    return [v.to(dtype=a.dtype) for v, a in zip(values, alphas)]


def sample_categorical(network: SearchNetwork, log_probs: Sequence[Tensor],
                       generator: torch.Generator) -> tuple[list[Tensor], list[Tensor]]:
    """An architecture drawn from per-row categorical distributions (``log_probs``, the alphas'
    shapes) by Gumbel-max through the network's projection, so cells keep their structure (the
    edges kept are those whose draw scored highest) and budgets hold. Returns (the values to
    run, in the alphas' dtypes; per row the one-hot category drawn, on the host)."""
    scores = []
    for lp in log_probs:
        u = torch.rand(lp.shape, generator=generator).clamp_(1e-10, 1.0 - 1e-10)
        scores.append(lp.detach().float().cpu() - torch.log(-torch.log(u)))
    values = network.project(scores)
    chosen = []
    for score, value in zip(scores, values):
        onehot = torch.zeros_like(score).scatter_(-1, score.argmax(-1, keepdim=True), 1.0)
        kept = value.detach().cpu().float()
        chosen.append(torch.where(kept.sum(-1, keepdim=True) > 0, kept, onehot))
    return [v.to(dtype=a.dtype) for v, a in zip(values, network.arch_parameters())], chosen


def arch_optimizer(problem: SearchProblem, params: Sequence[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam with the problem's architecture settings."""
    return torch.optim.Adam(
        list(params), lr=problem.arch_lr, betas=problem.arch_betas, weight_decay=problem.arch_weight_decay
    )
