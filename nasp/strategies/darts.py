"""DARTS (Liu et al., ICLR 2019) as baselines: softmax mixing of every op on every edge.

``darts`` is first order (architecture gradient at the current weights); ``darts2`` is second
order: the gradient of L_val(w', alpha) at the unrolled weights w', with the Hessian-vector
product approximated by central finite differences, as in the DARTS paper.

The unrolled step (``problem.options["unrolled"]``) is ``plain`` (the default:
``w' = w - xi * dL_train/dw``) or ``darts`` (DARTS' own code: the step the real optimizer would
take, ``w' = w - xi * (momentum * buffer + dL_train/dw + weight_decay * w)``, read from the
weight optimizer's param groups and momentum buffers). The three passes on the training batch
(unrolled, w+ and w-) run under one forked RNG state, so dropout draws the same masks in each and
the finite difference compares one function at two points; the global RNG is left as it was.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor

from ..errors import NaspError
from ..mixing import Softmax
from .base import SearchProblem, Strategy, arch_optimizer, differentiating_only
from .registry import STRATEGIES


def _grads(loss: Tensor, params: list, *, retain_graph: bool = False) -> list[Tensor]:
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=retain_graph)
    # sparse gradients (large embedding tables) densified: the unrolled step adds them to weights
    return [torch.zeros_like(p) if g is None else g.to_dense() if g.is_sparse else g for p, g in zip(params, grads)]


def _plain_step(optimizer: torch.optim.Optimizer, weights: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
    """The unrolled update ``-grad`` (scaled by xi by the caller)."""
    return grads


def _optimizer_step(optimizer: torch.optim.Optimizer, weights: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
    """DARTS' unrolled update: ``momentum * buffer + grad + weight_decay * w`` from the optimizer's
    param groups (0 where a group has no momentum / weight decay, or no buffer yet)."""
    groups = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    out = []
    for w, g in zip(weights, grads):
        group = groups.get(id(w), {})
        d = g + float(group.get("weight_decay", 0.0) or 0.0) * w.detach()
        buffer = optimizer.state.get(w, {}).get("momentum_buffer")
        if buffer is not None:
            d = d + float(group.get("momentum", 0.0) or 0.0) * buffer
        out.append(d)
    return out


#: ``--unrolled`` choices: the direction of the unrolled weight step (taken with size xi)
UNROLLED: dict[str, Callable[[torch.optim.Optimizer, list[Tensor], list[Tensor]], list[Tensor]]] = {
    "plain": _plain_step,
    "darts": _optimizer_step,
}
DEFAULT_UNROLLED = "plain"
UNROLLED_HELP = ("darts2 only: the unrolled weight step, plain (w - xi * grad; the default) or darts (DARTS' code: the step of "
                 "the real optimizer, with its momentum buffer and weight decay).")
"""``--unrolled``'s help on every command that offers it."""


class _SharedRng:
    """Fork the RNG (CPU and the CUDA devices in use) and reset it to one state on demand."""

    def __init__(self, devices: list[int]) -> None:
        self.devices = devices
        self.fork = torch.random.fork_rng(devices=devices)
        self.cpu: Optional[Tensor] = None
        self.cuda: list[Tensor] = []

    def __enter__(self) -> "_SharedRng":
        self.fork.__enter__()
        self.cpu = torch.get_rng_state()
        self.cuda = [torch.cuda.get_rng_state(d) for d in self.devices]
        return self

    def reset(self) -> None:
        torch.set_rng_state(self.cpu)
        for d, state in zip(self.devices, self.cuda):
            torch.cuda.set_rng_state(state, d)

    def __exit__(self, *exc: Any) -> Any:
        return self.fork.__exit__(*exc)


@STRATEGIES.register("darts")
class DARTS(Strategy):
    """First-order DARTS: alternate an Adam step of the architecture on a validation batch and an
    SGD step of the weights on a training batch, both through the full softmax supernet. Its
    validation scores are the supernet's; it exports DARTS' softmax derivation of the alphas."""

    validates = "supernet"

    def __init__(self, problem: SearchProblem, epochs: int) -> None:
        super().__init__(problem, epochs)
        self.arch_params = self.network.arch_parameters() + self.network.arch_extra_parameters()
        self.arch_optimizer = arch_optimizer(problem, self.arch_params)

    def arch_gradients(self, train_batch: Any, valid_batch: Any) -> tuple[list[Tensor], Tensor]:
        """The architecture's gradients (averaged over the ranks of a data-parallel run) and the loss."""
        with differentiating_only(self.network, self.arch_params):
            loss = self.problem.loss(self.network, valid_batch)
        *grads, loss = self.synced(_grads(loss, self.arch_params), self.arch_params, valid_batch, loss.detach())
        return grads, loss

    def step(self, train_batch: Any, valid_batch: Any) -> dict[str, Tensor]:
        self.arch_optimizer.zero_grad(set_to_none=True)
        with self.network.using(Softmax()):
            grads, arch_loss = self.arch_gradients(train_batch, valid_batch)
        for p, g in zip(self.arch_params, grads):
            p.grad = g
        self.arch_optimizer.step()
        train_loss = self.weight_step(train_batch, Softmax())
        return {"train_loss": train_loss, "arch_loss": arch_loss}

    @contextmanager
    def _eval_architecture(self) -> Iterator[None]:
        with self.network.using(Softmax()):
            yield

    def projected_values(self, alphas: Sequence[Tensor]) -> list[Tensor]:
        """Per row the softmax of the alphas: the weights DARTS derives its cell from."""
        return [torch.softmax(a.detach().float().cpu(), dim=-1) for a in alphas]

    def architecture_of(self, alphas: Sequence[Tensor]) -> Any:
        """DARTS' derivation from continuous alphas (softmax; top-k edges by probability). Under a
        budget (``network.budget``), the budgeted projection of the same softmax weights: the
        most probable cell that fits, which is DARTS' cell whenever that one fits."""
        if self.network.budget is None:
            return self.network.derive(alphas)
        return self.network.export(self.network.budget(self.projected_values(alphas)), alphas)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "arch_optimizer": self.arch_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])


@STRATEGIES.register("darts2")
class DARTSSecondOrder(DARTS):
    """Second-order DARTS: unrolled weight step of size xi (the weights' current learning rate),
    Hessian-vector product by central finite differences with radius 0.01 / ||grad||."""

    reads = frozenset({"unrolled"})
    unrolls_weights = True

    def __init__(self, problem: SearchProblem, epochs: int) -> None:
        super().__init__(problem, epochs)
        name = problem.options.get("unrolled", DEFAULT_UNROLLED)
        if name not in UNROLLED:
            raise NaspError(f"--unrolled {name!r}: choose one of {', '.join(UNROLLED)}")
        self.unrolled_update = UNROLLED[name]

    def arch_gradients(self, train_batch: Any, valid_batch: Any) -> tuple[list[Tensor], Tensor]:
        weights = [p for p in self.weight_params if p.requires_grad]
        xi = self.current_lr()
        backup = [w.detach().clone() for w in weights]
        devices = sorted({w.device.index or 0 for w in weights if w.device.type == "cuda"})

        with _SharedRng(devices) as rng:
            # each gradient averaged over the ranks of a data-parallel run, as the whole batch's
            grad_w = self.synced(_grads(self.problem.loss(self.network, train_batch), weights), weights,
                                          train_batch)
            step = self.unrolled_update(self.weight_optimizer, weights, grad_w)
            with torch.no_grad():
                torch._foreach_add_(weights, step, alpha=-xi)
            val_loss = self.problem.loss(self.network, valid_batch)
            *grads, val_loss = self.synced(_grads(val_loss, self.arch_params + weights), self.arch_params + weights,
                                           valid_batch, val_loss.detach())
            d_arch, d_w = grads[: len(self.arch_params)], grads[len(self.arch_params) :]

            radius = 0.01 / torch.cat([g.reshape(-1) for g in d_w]).norm().clamp_min(1e-12)
            hessian = []
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    for w, b, g in zip(weights, backup, d_w):
                        w.copy_(b + sign * radius * g)
                rng.reset()
                hessian.append(self.synced(_grads(self.problem.loss(self.network, train_batch), self.arch_params),
                                                    self.arch_params, train_batch))
        with torch.no_grad():
            for w, b in zip(weights, backup):
                w.copy_(b)
        total = [da - xi * (gp - gn) / (2 * radius) for da, gp, gn in zip(d_arch, *hessian)]
        return total, val_loss
