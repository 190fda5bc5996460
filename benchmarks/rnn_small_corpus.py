"""Does a searched and retrained recurrent cell learn a language? A small-corpus check, offline.

Writes a structured synthetic corpus (a small grammar: determiner-number agreement,
subject-verb agreement across an optional relative clause, topic-coherent nouns, prepositional
phrases), then runs the real commands end to end:

    nasp rnn search --strategy nasp ...   ->  arch.json
    nasp rnn train --genotype <search run> ...   (and DARTS_V2 for comparison)

and compares their test perplexity with a unigram model (add-one) and an interpolated bigram
model (interpolation weight tuned on validation) estimated on the same training split.
Results go to benchmarks/results/rnn_small_corpus.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "rnn_small_corpus.json"

TOPICS = {
    "kitchen": ["cook", "knife", "plate", "oven", "spoon", "bowl", "baker", "cup"],
    "farm": ["farmer", "cow", "horse", "field", "barn", "goat", "tractor", "sheep"],
    "school": ["teacher", "student", "book", "desk", "pencil", "class", "lesson", "child"],
    "sea": ["sailor", "boat", "fish", "wave", "island", "captain", "net", "shell"],
}
ADJ = ["old", "small", "red", "quiet", "happy", "heavy", "new", "dark", "tall", "clean"]
VERBS = ["see", "like", "carry", "find", "watch", "push", "follow", "hold", "clean", "need"]
PREP = ["near", "behind", "under", "with", "beside", "inside"]
ADV = ["today", "again", "slowly", "often", "quickly"]


def noun_phrase(rng: random.Random, nouns: list[str], plural: bool) -> list[str]:
    det = rng.choice(["the", "some", "many", "these"] if plural else ["the", "a", "every", "this"])
    words = [det]
    if rng.random() < 0.4:
        words.append(rng.choice(ADJ))
    noun = rng.choice(nouns)
    words.append(noun + "s" if plural else noun)
    return words


def verb(rng: random.Random, plural: bool) -> str:
    v = rng.choice(VERBS)
    return v if plural else (v + "es" if v.endswith(("sh", "ch", "ss")) else v + "s")


def sentence(rng: random.Random) -> str:
    nouns = TOPICS[rng.choice(list(TOPICS))]
    plural = rng.random() < 0.5
    words = noun_phrase(rng, nouns, plural)
    if rng.random() < 0.3:  # agreement must survive the relative clause
        obj_plural = rng.random() < 0.5
        words += ["that", verb(rng, plural)] + noun_phrase(rng, nouns, obj_plural)
    words.append(verb(rng, plural))
    words += noun_phrase(rng, nouns, rng.random() < 0.5)
    if rng.random() < 0.4:
        words += [rng.choice(PREP)] + noun_phrase(rng, nouns, rng.random() < 0.5)
    if rng.random() < 0.3:
        words.append(rng.choice(ADV))
    return " ".join(words)


def write_corpus(folder: Path, sentences: tuple[int, int, int], seed: int = 0) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "valid", "test"), sentences):
        (folder / f"ptb.{split}.txt").write_text("\n".join(sentence(rng) for _ in range(n)) + "\n")


def ngram_baselines(folder: Path) -> dict:
    from nasp.rnn.corpus import read_corpus

    c = read_corpus(folder)
    train, valid, test = c.train.tolist(), c.valid.tolist(), c.test.tolist()
    v = len(c.vocab)
    uni = Counter(train)
    p_uni = {w: (uni[w] + 1) / (len(train) + v) for w in range(v)}
    bi = Counter(zip(train[:-1], train[1:]))

    def ppl_uni(seq: list[int]) -> float:
        return math.exp(-sum(math.log(p_uni[w]) for w in seq) / len(seq))

    def ppl_bi(seq: list[int], lam: float) -> float:
        nll = 0.0
        for prev, w in zip(seq[:-1], seq[1:]):
            p = lam * (bi[(prev, w)] / uni[prev] if uni[prev] else 0.0) + (1 - lam) * p_uni[w]
            nll -= math.log(p)
        return math.exp(nll / (len(seq) - 1))

    lam = min((0.5, 0.7, 0.8, 0.9, 0.95, 0.99), key=lambda l: ppl_bi(valid, l))
    return {"vocab": v, "train_tokens": len(train), "test_tokens": len(test),
            "unigram_test_ppl": ppl_uni(test), "bigram_test_ppl": ppl_bi(test, lam), "bigram_lambda": lam}


def nasp(*args: str) -> dict:
    cmd = [sys.executable, str(ROOT / "cli.py"), "rnn", *args, "--json", "--device", "cpu"]
    print("$ nasp rnn " + " ".join(args), file=sys.stderr)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        sys.exit(done.stderr)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sentences", type=int, nargs=3, default=(6000, 600, 600))
    p.add_argument("--search-epochs", type=int, default=3)
    p.add_argument("--train-epochs", type=int, default=15)
    p.add_argument("--size", type=int, default=64, help="embedding = hidden size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nasp-rnn-small-"))
    corpus = work / "corpus"
    write_corpus(corpus, tuple(args.sentences), args.seed)
    report = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "corpus": "synthetic grammar, benchmarks/rnn_small_corpus.py", **ngram_baselines(corpus)}
    common = ["--data", str(corpus), "--emb-size", str(args.size), "--hidden-size", str(args.size),
              "--bptt", "20", "--seed", str(args.seed), "--eval-batch-size", "10",
              "--dropout", "0.3", "--dropouth", "0.1", "--dropoutx", "0.3", "--dropouti", "0.1", "--dropoute", "0"]
    s = nasp("search", *common, "--strategy", "nasp", "--epochs", str(args.search_epochs), "--batch-size", "32",
             "--out", str(work / "search"))
    report["search"] = s
    for name, genotype in (("searched", str(work / "search")), ("DARTS_V2", "DARTS_V2")):
        t = nasp("train", *common, "--genotype", genotype, "--epochs", str(args.train_epochs), "--batch-size", "32",
                 "--out", str(work / f"train-{name}"))
        report[f"train_{name}"] = t
    report["ratio_unigram_over_searched"] = report["unigram_test_ppl"] / report["train_searched"]["test_ppl"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"vocab {report['vocab']}, train tokens {report['train_tokens']}")
    print(f"{'model':28s} {'test ppl':>9s}")
    print(f"{'unigram (add-one)':28s} {report['unigram_test_ppl']:9.2f}")
    print(f"{'bigram (interpolated)':28s} {report['bigram_test_ppl']:9.2f}")
    print(f"{'NASP-searched cell':28s} {report['train_searched']['test_ppl']:9.2f}")
    print(f"{'DARTS_V2 cell':28s} {report['train_DARTS_V2']['test_ppl']:9.2f}")
    print(f"searched genotype: {report['search']['genotype']['recurrent']}")
    print(f"written {args.out}; corpus and run directories kept in {work}")


if __name__ == "__main__":
    main()
