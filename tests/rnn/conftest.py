import random
from pathlib import Path

import pytest
import torch


def write_corpus(folder: Path, lines: tuple[int, int, int] = (120, 30, 30), prefix: str = "ptb.", seed: int = 0) -> Path:
    """A tiny corpus with structure (subject verb object [adverb]) that an LM can learn."""
    rng = random.Random(seed)
    subj = ["the cat", "a dog", "the man", "my friend"]
    verb = ["sees", "likes", "eats", "wants"]
    obj = ["the fish", "a ball", "the food", "some water"]
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "valid", "test"), lines):
        text = []
        for _ in range(n):
            words = [rng.choice(subj), rng.choice(verb), rng.choice(obj)]
            if rng.random() < 0.5:
                words.append("today")
            text.append(" ".join(words))
        if split == "test":
            text.append("the zebra sees a ball")  # 'zebra' is not in train: <unk>
        (folder / f"{prefix}{split}.txt").write_text("\n".join(text) + "\n")
    return folder


@pytest.fixture
def make_corpus():
    return write_corpus


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")


@pytest.fixture
def tiny() -> list[str]:
    """CLI options of a tiny, fast model."""
    return list(TINY)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is much faster on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = ["--batch-size", "4", "--bptt", "5", "--emb-size", "8", "--hidden-size", "8", "--eval-batch-size", "4",
        "--device", "cpu"]
