import importlib.util
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ML100K = Path(os.environ.get("NASP_ML100K", ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"))

# tiny models: one thread is fastest and immune to oversubscription on shared CI machines
torch.set_num_threads(1)
# CliRunner mixes stderr into result.output, which tests parse as JSON: no per-epoch log lines
# (tests of the default output unset it)
os.environ.setdefault("NASP_QUIET", "1")


def load_example(name: str):
    """Import ``examples/<name>.py`` (examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def feature_transform():
    return load_example("feature_transform")


@pytest.fixture(scope="session")
def ml100k_path() -> Path:
    if not ML100K.exists():
        pytest.skip(f"MovieLens-100K not found at {ML100K}")
    return ML100K


def write_ratings(path: Path, users: int = 40, items: int = 30, n: int = 900) -> Path:
    """A tiny u.data: ``n`` distinct (user, item) pairs of 40 users x 30 items (by default),
    ratings 1-5, timestamps in order."""
    rng = np.random.default_rng(0)
    pairs = rng.choice(users * items, size=n, replace=False)
    path.write_text("".join(f"{p // items + 1}\t{p % items + 1}\t{rng.integers(1, 6)}\t{880000000 + k}\n"
                            for k, p in enumerate(pairs)))
    return path


def write_word_corpus(folder: Path, lines: tuple[int, int, int] = (12, 6, 6)) -> Path:
    """A tiny {train,valid,test}.txt corpus (subject verb object) that an LM can learn."""
    rng = random.Random(0)
    words = (["the cat", "a dog", "my friend"], ["sees", "likes", "eats"], ["the fish", "a ball", "some water"])
    folder.mkdir()
    for split, n in zip(("train", "valid", "test"), lines):
        (folder / f"{split}.txt").write_text("".join(" ".join(rng.choice(w) for w in words) + "\n" for _ in range(n)))
    return folder


@pytest.fixture(scope="session")
def ratings_writer():
    """``write_ratings`` (test modules cannot import conftest under --import-mode=importlib)."""
    return write_ratings


@pytest.fixture(scope="session")
def corpus_writer():
    """``write_word_corpus``."""
    return write_word_corpus
