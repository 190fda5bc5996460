"""Using the NASP core outside recommender systems and cells: pick, for every input feature of a
regression problem, the transform (identity, square, log, exp) that explains the target.

Run it:  python examples/feature_transform.py
It searches with every registered strategy and prints what each one chose; the true answer
is ``log`` for feature 0 and ``square`` for feature 1 (``exp`` for feature 2 with 3 features).
All candidates increase with x, so a feature's coefficient keeps its sign whichever is selected.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from nasp import SearchNetwork, mix, plan
from nasp.strategies import STRATEGIES, SearchProblem, build_strategy, search_strategy_names

TRANSFORMS = {
    "identity": lambda x: x,
    "square": lambda x: x**2,
    "log": torch.log,
    "exp": torch.exp,
}
TRUTH = ["log", "square", "exp"]
COEF = [2.0, -1.5, 0.5]


def make_data(n: int, features: int = 2, seed: int = 0, noise: float = 0.1) -> tuple[Tensor, Tensor]:
    """``x`` uniform in [0.5, 3]; ``y = sum_j COEF[j] * TRUTH[j](x_j) + noise``."""
    g = torch.Generator().manual_seed(seed)
    x = 0.5 + 2.5 * torch.rand(n, features, generator=g)
    y = sum(COEF[j] * TRANSFORMS[TRUTH[j]](x[:, j]) for j in range(features))
    return x, y + noise * torch.randn(n, generator=g)


class TransformNet(SearchNetwork):
    """y = b + sum_j w_j * T_j(x_j) with T_j mixed from the candidate transforms (standardized)."""

    def __init__(self, x_train: Tensor) -> None:
        super().__init__()
        feats = self._all_transforms(x_train)  # n x features x K
        self.register_buffer("mean", feats.mean(0))
        self.register_buffer("std", feats.std(0).clamp_min(1e-6))
        features, k = self.mean.shape
        self.alpha = nn.Parameter(0.5 + 1e-3 * torch.randn(features, k))
        self.coef = nn.Parameter(torch.zeros(features))
        self.bias = nn.Parameter(torch.zeros(()))

    @staticmethod
    def _all_transforms(x: Tensor) -> Tensor:
        return torch.stack([fn(x) for fn in TRANSFORMS.values()], dim=-1)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def forward(self, x: Tensor) -> Tensor:
        z = (self._all_transforms(x) - self.mean) / self.std
        p = plan(self.alpha, self.mixing)
        out = self.bias.expand(x.shape[0])
        for j in range(x.shape[1]):
            candidates = [lambda j=j, k=k: z[:, j, k] for k in range(z.shape[-1])]
            mixed = mix(candidates, p, j)
            if mixed is not None:
                out = out + self.coef[j] * mixed
        return out

    def reset_weights(self) -> None:
        with torch.no_grad():
            self.coef.zero_()
            self.bias.zero_()

    def derive(self, alphas: Optional[Sequence[Tensor]] = None) -> list[str]:
        alpha = (alphas or self.arch_parameters())[0]
        names = list(TRANSFORMS)
        return [names[i] for i in alpha.argmax(-1).tolist()]


def search(strategy: str, features: int = 2, epochs: int = 30, seed: int = 0, candidates: Optional[int] = None) -> list[str]:
    """Search with the named strategy; returns the chosen transform of every feature."""
    torch.manual_seed(seed)
    x, y = make_data(3000, features, seed)
    (xt, yt), (xv, yv) = (x[:2000], y[:2000]), (x[2000:], y[2000:])
    net = TransformNet(xt)
    problem = SearchProblem(
        network=net,
        loss=lambda model, batch: nn.functional.mse_loss(model(batch[0]), batch[1]),
        weight_optimizer=lambda params: torch.optim.Adam(params, lr=0.05),
        arch_lr=0.003,
        metric="valid_mse",
        options={"candidates": candidates, "seed": seed},
    )
    strat = build_strategy(strategy, problem, epochs)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        strat.begin_epoch(epoch)
        order, vorder = torch.randperm(2000, generator=g), torch.randperm(1000, generator=g)
        for i in range(0, 2000, 200):
            t, v = order[i : i + 200], vorder[(i // 2) : (i // 2) + 100]
            strat.step((xt[t], yt[t]), (xv[v], yv[v]))
        with strat.evaluation():
            mse = nn.functional.mse_loss(net(xv), yv).item()
        strat.end_epoch(epoch, {"valid_mse": mse})
    return strat.export()


#: epochs each search strategy needs here (random, reinforce and tpe train 40 candidates; gdas and snas sample paths;
#: bayesnas' linear switches on these strongly correlated transforms separate slowly at the architecture rate)
EPOCHS = {"random": 200, "reinforce": 200, "tpe": 200, "gdas": 100, "snas": 60, "bayesnas": 200}


if __name__ == "__main__":
    print(f"truth: {TRUTH[:2]}")
    # "fixed" trains a given architecture: nothing to find; pcdarts needs a CNN cell's channels and edges
    for name in search_strategy_names("core"):
        reads_candidates = "candidates" in STRATEGIES.get(name).reads
        print(f"{name:8s} -> {search(name, epochs=EPOCHS.get(name, 30), candidates=40 if reads_candidates else None)}")
