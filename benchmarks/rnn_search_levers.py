"""Why do NASP's searched recurrent cells trail DARTS_V2? One lever at a time, on a small corpus.

The baseline is the issue's recipe scaled down: ``nasp rnn search`` (NASP, its defaults: DARTS'
search dropouts, ``--arch-lr 3e-3``) for ``--search-epochs`` epochs at ``--search-size``, the cell
it exports retrained ``--train-epochs`` epochs at ``--train-size``; DARTS_V2 retrained the same
way on the same seed. Each lever changes one thing of the baseline search:

* ``epochs x3``: a search three times as long;
* ``arch-lr x10`` / ``arch-lr /10``: the architecture's Adam rate;
* ``no arch dropout``: the architecture steps run without dropout (``--no-arch-dropout``);
* ``softmax derivation``: the baseline's own final alphas, read with DARTS' rule (per node the
  predecessor whose softmaxed row has the largest maximum) instead of NASP's projection.

Corpus: ``rnn_small_corpus.py``'s grammar (``--sentences``), written to a temporary folder.
Writes ``benchmarks/results/rnn_search_levers.json`` after every retraining (a stopped run goes
on where it was).

    python benchmarks/rnn_search_levers.py [--seeds 0 1 2] [--quick]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from nasp.errors import NaspError  # noqa: E402
from nasp.loop import Hook, RunLoop  # noqa: E402
from nasp.rnn.corpus import Corpus, read_corpus  # noqa: E402
from nasp.rnn.genotypes import GENOTYPES, RecurrentGenotype  # noqa: E402
from nasp.rnn.model import Dropouts  # noqa: E402
from nasp.rnn.search import SearchConfig, search  # noqa: E402
from nasp.rnn.train import Trainer, TrainConfig  # noqa: E402
from nasp.runs import RunDir  # noqa: E402
from rnn_small_corpus import write_corpus  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "rnn_search_levers.json"

#: the baseline's architecture rate: DARTS' RNN value, the command's default when this
#: benchmark was first run (the default is now the "arch-lr /10" lever's 3e-4)
BASELINE_ARCH_LR = 3e-3


@dataclass(frozen=True)
class Lever:
    """A change of the baseline search: settings of ``SearchConfig`` (``epochs_times`` scales
    its epochs) and the derivation rule ("projection": NASP's export; "softmax": DARTS')."""

    settings: dict = field(default_factory=dict)
    epochs_times: int = 1
    derivation: str = "projection"


LEVERS = {
    "baseline": Lever(),
    "epochs x3": Lever(epochs_times=3),
    "arch-lr x10": Lever({"arch_lr": 3e-2}),
    "arch-lr /10": Lever({"arch_lr": 3e-4}),
    "no arch dropout": Lever({"arch_dropout": False}),
}
"""The searches; ``softmax derivation`` reads the baseline's final alphas (no search of its own)."""


class FinalAlphas(Hook):
    """Keeps the search network at the end, to read its final alphas with DARTS' rule."""

    def __init__(self) -> None:
        self.network: Any = None

    def on_end(self, loop: RunLoop) -> None:
        self.network = loop.network


def searched(corpus: Corpus, lever: Lever, seed: int, args: argparse.Namespace, work: Path) -> dict[str, RecurrentGenotype]:
    """The cells of one search: NASP's export, and DARTS' softmax reading of the same alphas."""
    settings = {"arch_lr": BASELINE_ARCH_LR, **lever.settings}
    config = SearchConfig(strategy="nasp", epochs=args.search_epochs * lever.epochs_times, batch_size=args.batch_size,
                          bptt=args.bptt, emb_size=args.search_size, hidden_size=args.search_size, seed=seed, lr=args.lr,
                          **settings)
    config.validate(corpus)
    torch.manual_seed(seed)
    final = FinalAlphas()
    result = search(corpus, config, RunDir(work), torch.device("cpu"), [final])
    return {"projection": result["genotype"], "softmax": final.network.genotype()}


def retrained(corpus: Corpus, genotype: RecurrentGenotype, seed: int, args: argparse.Namespace, work: Path) -> dict:
    """Test perplexity of ``genotype`` retrained with the benchmark's training settings."""
    config = TrainConfig(epochs=args.train_epochs, batch_size=args.batch_size, bptt=args.bptt, emb_size=args.train_size,
                         hidden_size=args.train_size, seed=seed, lr=args.lr)
    config.validate(corpus)
    torch.manual_seed(seed)
    summary = Trainer(corpus, genotype, config, RunDir(work), torch.device("cpu")).fit()
    return {"test_ppl": summary["test_ppl"], "valid_ppl": summary["valid_ppl"], "genotype": genotype.to_json()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sentences", type=int, nargs=3, default=[1000, 200, 200])
    p.add_argument("--search-epochs", type=int, default=1)
    p.add_argument("--search-size", type=int, default=32, help="embedding = hidden size of the search")
    p.add_argument("--train-epochs", type=int, default=3)
    p.add_argument("--train-size", type=int, default=64, help="embedding = hidden size of the retraining")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--bptt", type=int, default=20)
    p.add_argument("--lr", type=float, default=5.0, help="SGD rate of the weights, search and retraining (20, the "
                   "commands' default, diverges on small corpora at these sizes)")
    p.add_argument("--levers", nargs="+", default=[*LEVERS, "softmax derivation"])
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run (not a result)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    if args.quick:
        args.sentences, args.search_size, args.train_size, args.train_epochs = [200, 40, 40], 8, 8, 1
    torch.set_num_threads(1)
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items() if k not in ("out", "seeds")}
    result = json.loads(args.out.read_text()) if args.out.exists() and not args.quick else {"runs": []}
    if result.get("settings", settings) != settings:
        sys.exit(f"{args.out} holds runs of other settings; give another --out")
    result["settings"] = settings
    result["dropouts"] = {"search": Dropouts().to_dict(), "train": TrainConfig().dropouts.to_dict()}
    done = {(r["seed"], r["cell"]) for r in result["runs"]}
    with tempfile.TemporaryDirectory(prefix="nasp-levers-") as folder:
        work = Path(folder)
        write_corpus(work / "corpus", tuple(args.sentences), 0)
        corpus = read_corpus(work / "corpus")
        for seed in args.seeds:
            cells: dict[str, Optional[RecurrentGenotype]] = {"DARTS_V2": GENOTYPES.get("DARTS_V2")}
            for name in args.levers:
                if name == "softmax derivation" or (seed, name) in done and (name != "baseline" or (seed, "softmax derivation") in done):
                    continue
                try:
                    both = searched(corpus, LEVERS[name], seed, args, work / f"search-{seed}-{name}")
                except NaspError as exc:  # a diverged search: its row says so
                    result["runs"].append({"seed": seed, "cell": name, "failed": str(exc)})
                    continue
                cells[name] = both["projection"]
                if name == "baseline" and "softmax derivation" in args.levers:
                    cells["softmax derivation"] = both["softmax"]
            for name, genotype in cells.items():
                if (seed, name) in done:
                    continue
                row = {"seed": seed, "cell": name, **retrained(corpus, genotype, seed, args, work / f"train-{seed}-{name}")}
                result["runs"].append(row)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(result, indent=1) + "\n")
                print(json.dumps(row), flush=True)
    summary(result)


def summary(result: dict) -> None:
    """Mean test perplexity per cell, and its gap to DARTS_V2 on the same seed."""
    runs = result["runs"]
    runs = [r for r in runs if "test_ppl" in r]
    darts = {r["seed"]: r["test_ppl"] for r in runs if r["cell"] == "DARTS_V2"}
    print(f"{'cell':20s} {'seeds':>5s} {'test ppl':>9s} {'- DARTS_V2':>11s}")
    for name in dict.fromkeys(r["cell"] for r in runs):
        mine = [r for r in runs if r["cell"] == name]
        gaps = [r["test_ppl"] - darts[r["seed"]] for r in mine if r["seed"] in darts]
        print(f"{name:20s} {len(mine):5d} {statistics.mean(r['test_ppl'] for r in mine):9.2f} "
              f"{statistics.mean(gaps) if gaps else float('nan'):+11.2f}")


if __name__ == "__main__":
    main()
