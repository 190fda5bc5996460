"""One search of the CNN (digits) or RNN (small corpus) cell domain for ``equal_time.py``, in a
process of its own, measured along the way.

    python benchmarks/equal_time_nets.py '<json spec>'     # prints one JSON row (its last line)

The spec names the domain, the strategy, the seed, the time budget (seconds; None: NASP, which
sets it), the sizes (``SIZES``) and, for the RNN, the corpus folder. The search is the one the CLI runs
(``nasp.cnn.search.search`` / ``nasp.rnn.search.search``) with two hooks added:

* ``AnytimeScore``: after every epoch, the architecture the strategy would export then
  (``strategy.export()``) scored on the shared weights of the supernet: that cell alone, single
  path (``network.alphas_of``), validation accuracy (CNN, batch norm statistics recalibrated on
  that cell over 5 training batches) or perplexity (RNN); plus the search's
  cumulative wall and CPU seconds and its forward passes (those with autograd on, each followed by
  a backward, and those without). The scoring itself is neither timed nor counted.
* ``TimeBudget``: stops the search after the epoch that reaches the budget.

Extra memory, measured in the one-epoch pilot that precedes every search (the first search of a
fresh process): the peak resident set size (``VmHWM`` of ``/proc/self/status``, reset through
``/proc/self/clear_refs`` just before the search builds its network, read when its loop ends,
before the figures and files) minus the resident set size at that moment (PyTorch, its kernels and
optimizers warmed up, the data and the interpreter already loaded). Where the kernel does not allow
the reset, ``ru_maxrss`` stands in for the peak.
"""
from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from nasp.loop import Hook, RunLoop  # noqa: E402
from nasp.registry import Registry  # noqa: E402


# sizes ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CNNSizes:
    """Search and retraining sizes of the CNN benchmark (scikit-learn digits, 8x8 grey images)."""

    nasp_epochs: int = 8  #: NASP's search epochs: their time is every strategy's budget
    layers: int = 3
    channels: int = 8
    batch_size: int = 32
    subset: int = 512  #: training images the search uses: half for the weights, half for the architecture
    train_epochs: int = 3  #: retraining of every exported cell (the same for all)
    train_layers: int = 4
    train_channels: int = 8


@dataclass(frozen=True)
class RNNSizes:
    """Search and retraining sizes of the RNN benchmark (a synthetic PTB-format corpus of
    ``rnn_small_corpus.py``'s grammar)."""

    nasp_epochs: int = 3
    sentences: tuple[int, int, int] = (500, 100, 100)  #: train, valid, test sentences of the corpus
    size: int = 32  #: embedding = hidden size, search and retraining
    batch_size: int = 16
    bptt: int = 20
    train_epochs: int = 8
    dropouts: tuple[float, float, float, float, float] = (0.3, 0.1, 0.3, 0.1, 0.0)  #: output, hidden, x, input, embedding
    lr: float = 5.0  #: SGD rate of the weights, search and retraining (the default, 20, diverged in 10 of 45 runs at this size)


QUICK = {"cnn": CNNSizes(nasp_epochs=2, subset=128, train_epochs=1, train_layers=2, train_channels=4, channels=4, layers=2),
         "rnn": RNNSizes(nasp_epochs=2, sentences=(200, 40, 40), size=16, train_epochs=1)}
"""Smoke sizes (``--quick``): not a result."""
SIZES = {"cnn": CNNSizes(), "rnn": RNNSizes()}


# measurements -----------------------------------------------------------------------------------
def rss_mb() -> float:
    """The resident set size now (``/proc/self/statm``)."""
    import os

    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak() -> bool:
    """Reset the kernel's peak RSS of this process to its RSS now; False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mb(reset: bool) -> float:
    """The peak RSS since the reset (``VmHWM``), else since the start (``ru_maxrss``)."""
    if reset:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class AnytimeScore(Hook):
    """After every epoch: the exported architecture's score on the shared weights, and the search's
    cumulative wall seconds, CPU seconds and forward passes so far (``curve``)."""

    def __init__(self, metric: str, genotype_of: Callable[[dict], Any], recalibration_batches: int = 5) -> None:
        self.metric, self.genotype_of, self.recalibration_batches = metric, genotype_of, recalibration_batches
        self.curve: list[dict] = []
        self.passes = {"fwd_bwd": 0, "fwd_only": 0}
        self.counting = True
        self.wall = self.cpu = 0.0
        self.cpu_start = 0.0
        self.loop: Optional[RunLoop] = None

    def on_start(self, loop: RunLoop) -> None:
        self.loop = loop
        loop.network.register_forward_pre_hook(self._count)

    def _count(self, module: Any, inputs: Any) -> None:
        if self.counting:
            self.passes["fwd_bwd" if torch.is_grad_enabled() else "fwd_only"] += 1

    def begin_epoch(self, epoch: int) -> None:
        self.cpu_start = time.process_time()

    def end_epoch(self, epoch: int, row: dict) -> bool:
        self.cpu += time.process_time() - self.cpu_start
        self.wall += row["seconds"]
        strategy, network = self.loop.stepper, self.loop.network
        exported = strategy.export()
        values = network.alphas_of(self.genotype_of(exported))
        self.counting, was_training = False, network.training
        try:
            with torch.no_grad(), strategy.evaluating(values), self.recalibrated(network, epoch):
                network.eval()
                score = float(self.loop.evaluate(network)[self.metric])
        finally:
            network.train(was_training)
            strategy.forget_selection()
            self.counting = True
        self.curve.append({"epoch": epoch + 1, "seconds": round(self.wall, 3), "cpu_seconds": round(self.cpu, 3),
                           **self.passes, "score": score, "search_score": row.get(self.metric)})
        return False


    @contextmanager
    def recalibrated(self, network: torch.nn.Module, epoch: int) -> Iterator[None]:
        """Batch norm statistics of the cell being scored (as single-path one-shot methods do before
        evaluating a path): reset, then averaged over the first ``recalibration_batches`` training
        batches of ``epoch`` run through it; the search's own statistics are put back afterwards.
        Nothing for a network without batch norm (the RNN)."""
        norms = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
        try:
            if norms:
                for m in norms:
                    m.reset_running_stats()
                    m.momentum = None  # a cumulative average over the batches below
                network.train()
                for i, batch in enumerate(self.loop.train_batches(epoch)):
                    if i >= self.recalibration_batches:
                        break
                    self.loop.stepper.problem.loss(network, batch)
            yield
        finally:
            for m, (momentum, mean, var, count) in zip(norms, saved):
                m.momentum = momentum
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)


class PeakAtEnd(Hook):
    """Reads the peak RSS when the search loop ends (before the figures and files after it)."""

    def __init__(self, reset: bool) -> None:
        self.reset, self.peak = reset, 0.0

    def on_end(self, loop: RunLoop) -> None:
        self.peak = peak_mb(self.reset)


class TimeBudget(Hook):
    """Stop after the epoch whose end reaches ``seconds`` of search (None: never)."""

    def __init__(self, seconds: Optional[float]) -> None:
        self.seconds, self.spent = seconds, 0.0

    def end_epoch(self, epoch: int, row: dict) -> bool:
        self.spent += row["seconds"]
        return self.seconds is not None and self.spent >= self.seconds


# domains ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Domain:
    """How ``equal_time.py`` runs one domain: its score's name and direction, and ``run(spec, hooks)``
    -> (search summary, retrained summary or None)."""

    metric: str
    higher_is_better: bool
    score_name: str
    run: Callable[[dict, list[Hook], Path], tuple[dict, Optional[dict]]]
    genotype_of: Callable[[dict], Any]


def cnn_run(spec: dict, hooks: list[Hook], work: Path) -> tuple[dict, Optional[dict]]:
    """``nasp cnn search`` on digits with the spec's sizes (and ``nasp cnn train`` of the cell)."""
    from nasp.cnn.config import CNNSearchConfig, CNNTrainConfig
    from nasp.cnn.data import load_data
    from nasp.cnn.search import search
    from nasp.cnn.train import train
    from nasp.runs import RunDir

    s = CNNSizes(**spec["sizes"])
    data = load_data("digits")
    config = CNNSearchConfig.from_options({"data": "digits", "strategy": spec["strategy"], "epochs": spec["epochs"],
                                           "layers": s.layers, "channels": s.channels, "batch_size": s.batch_size,
                                           "subset": s.subset, "seed": spec["seed"]}, data)
    config.validate(data)
    summary = measured(lambda peak: search(config, RunDir(work / "search"), torch.device("cpu"), data, [*hooks, peak]))
    if not spec["retrain"]:
        return summary, None
    train_config = CNNTrainConfig.from_options({"data": "digits", "genotype": str(work / "search" / "arch.json"),
                                                "epochs": s.train_epochs, "layers": s.train_layers,
                                                "channels": s.train_channels, "batch_size": s.batch_size,
                                                "seed": spec["seed"]}, data)
    train_config.validate(data)
    trained = train(train_config, RunDir(work / "train"), torch.device("cpu"), data)
    return summary, {"test_acc": trained["test_acc"], "seconds": trained["train_seconds"], "params": trained["params"]}


def rnn_run(spec: dict, hooks: list[Hook], work: Path) -> tuple[dict, Optional[dict]]:
    """``nasp rnn search`` on the spec's corpus (and ``nasp rnn train`` of the cell)."""
    from nasp.rnn.corpus import read_corpus
    from nasp.rnn.model import Dropouts
    from nasp.rnn.search import SearchConfig, search
    from nasp.rnn.train import Trainer, TrainConfig
    from nasp.runs import RunDir

    s = RNNSizes(**{**spec["sizes"], "sentences": tuple(spec["sizes"]["sentences"]), "dropouts": tuple(spec["sizes"]["dropouts"])})
    corpus = read_corpus(spec["corpus"])
    dropouts = Dropouts(*s.dropouts)
    shared = {"batch_size": s.batch_size, "bptt": s.bptt, "emb_size": s.size, "hidden_size": s.size, "seed": spec["seed"],
              "dropouts": dropouts, "lr": s.lr}
    config = SearchConfig(strategy=spec["strategy"], epochs=spec["epochs"], **shared)
    config.validate(corpus)
    torch.manual_seed(spec["seed"])
    result = measured(lambda peak: search(corpus, config, RunDir(work / "search"), torch.device("cpu"), [*hooks, peak]))
    summary = {**result["summary"], "memory": result["memory"]}
    if not spec["retrain"]:
        return summary, None
    train_config = TrainConfig(epochs=s.train_epochs, **shared)
    train_config.validate(corpus)
    torch.manual_seed(spec["seed"])
    trained = Trainer(corpus, result["genotype"], train_config, RunDir(work / "train"), torch.device("cpu")).fit()
    return summary, {"valid_ppl": trained["valid_ppl"], "test_ppl": trained["test_ppl"], "seconds": trained["train_seconds"]}


def measured(fn: Callable[[PeakAtEnd], dict]) -> dict:
    """``fn(peak)``'s result with its extra memory (``memory``: the peak RSS until the search loop ended,
    read by the hook ``peak``, above the RSS before ``fn``)."""
    warm_up_torch()
    reset = reset_peak()
    before = rss_mb()
    hook = PeakAtEnd(reset)
    result = fn(hook)
    peak = hook.peak
    result["memory"] = {"extra_mb": round(peak - before, 1), "before_mb": round(before, 1), "peak_mb": round(peak, 1),
                        "kind": "VmHWM after a clear_refs reset, minus RSS before" if reset else "ru_maxrss minus RSS before"}
    return result


def warm_up_torch() -> None:
    """A convolution, a matrix product, their backward and a step of SGD and Adam, so that what PyTorch
    loads on first use (kernels, the optimizers' modules) counts in the baseline, not as a search's
    extra memory."""
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    torch.nn.functional.conv2d(x, torch.randn(4, 3, 3, 3)).sum().backward()
    w = torch.randn(8, 8, requires_grad=True)
    torch.tanh(torch.randn(4, 8) @ w).sum().backward()
    for optimizer in (torch.optim.SGD([w], lr=0.1, momentum=0.9), torch.optim.Adam([x], lr=0.1)):
        optimizer.step()


def _cnn_genotype(exported: dict) -> Any:
    from nasp.cnn.genotypes import Genotype

    return Genotype.from_json(exported, "exported genotype")


def _rnn_genotype(exported: dict) -> Any:
    from nasp.rnn.genotypes import RecurrentGenotype

    return RecurrentGenotype.from_json(exported, source="exported genotype")


DOMAINS: Registry[Domain] = Registry("domain")
DOMAINS.register("cnn")(Domain("valid_acc", True, "accuracy", cnn_run, _cnn_genotype))
DOMAINS.register("rnn")(Domain("valid_ppl", False, "perplexity", rnn_run, _rnn_genotype))


def worker(spec: dict) -> dict:
    """The row of ``spec``: a one-epoch pilot (its pace, and the extra memory of a search: the first in
    this process), then the search of the epochs that fit in ``spec["budget"]`` (NASP, no budget:
    ``nasp_epochs``) stopped at the budget, and the retraining of its cell."""
    torch.set_num_threads(1)
    skip_figures()
    domain = DOMAINS.get(spec["domain"])
    with tempfile.TemporaryDirectory(prefix="nasp-equal-time-") as work:
        pilot, _ = domain.run({**spec, "epochs": 1, "retrain": False}, [TimeBudget(None)], Path(work) / "pilot")
        pace = max(float(pilot["search_seconds"]), 1e-3)
        budget = spec.get("budget")
        epochs = spec["sizes"]["nasp_epochs"] if budget is None else max(1, int(round(budget / pace)))
        anytime = AnytimeScore(domain.metric, domain.genotype_of)
        summary, retrained = domain.run({**spec, "epochs": epochs, "retrain": True}, [anytime, TimeBudget(budget)],
                                        Path(work) / "run")
    curve = anytime.curve
    return {"seed": spec["seed"], "strategy": spec["strategy"], "epochs": epochs, "epochs_run": len(curve),
            "pilot_seconds": round(pace, 3), "budget_seconds": budget, "search_seconds": curve[-1]["seconds"],
            "cpu_seconds": curve[-1]["cpu_seconds"], "fwd_bwd": curve[-1]["fwd_bwd"], "fwd_only": curve[-1]["fwd_only"],
            "score": curve[-1]["score"], "curve": curve, "memory": pilot["memory"], "retrained": retrained,
            "genotype": summary["genotype"] if isinstance(summary["genotype"], str) else json.dumps(summary["genotype"])}


def skip_figures() -> None:
    """The searches and trainings here draw no figure (each costs ~0.4 s; none is read)."""
    from nasp.cnn import search as cnn_search, train as cnn_train
    from nasp.rnn import search as rnn_search, train as rnn_train

    def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    for module, names in ((cnn_search, ("plot_genotype", "plot_curves", "plot_pareto")),
                          (cnn_train, ("plot_genotype", "plot_curves"))):
        for name in names:
            setattr(module, name, nothing)
    for module in (rnn_search, rnn_train):
        module.Curves = NoCurves


class NoCurves(Hook):
    """Stands in for ``nasp.plots.Curves`` (draws nothing)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass


def sizes_of(domain: str, quick: bool) -> dict:
    """The sizes of ``domain`` as JSON."""
    return asdict((QUICK if quick else SIZES)[domain])


if __name__ == "__main__":
    print(json.dumps(worker(json.loads(sys.argv[1]))), flush=True)
