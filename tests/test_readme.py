"""The README's code blocks run as written, and the docs' relative links resolve.

- ```bash blocks: the quick start's `make` lines must name targets of the Makefile (running
  `make test` here would recurse); every other bash block runs in a fresh folder with `nasp` on
  the PATH (smoke).
- ```python blocks run in that folder as a script (smoke).

The folder's data root (`datasets/`, also `$NASP_DATA_DIR`) holds MovieLens-100K, linked from
the clone's `datasets/ml-100k` or a sibling `../shared/data/ml-100k` (the tests skip without
it), and a small stand-in corpus in Penn Treebank's place (`ptb`), so that the RNN example
runs as written in seconds.
"""
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
TIMEOUT = 120


def blocks(lang: str) -> list[str]:
    return [code for tag, code in BLOCK.findall(README.read_text()) if tag == lang]


def is_quick_start(code: str) -> bool:
    return any(line.startswith("make ") for line in code.splitlines())


def ml100k() -> Path:
    for candidate in (ROOT / "datasets" / "ml-100k", ROOT.parent / "shared" / "data" / "ml-100k"):
        if (candidate / "u.data").is_file():
            return candidate.resolve()
    pytest.skip("MovieLens-100K is not under datasets/ml-100k or ../shared/data/ml-100k")


def write_corpus(folder: Path) -> None:
    """A Markov chain over 100 words in PTB's file names (what `--data ptb` resolves to)."""
    folder.mkdir(parents=True)
    rng = random.Random(0)
    successors = {w: [rng.randrange(100) for _ in range(3)] for w in range(100)}
    for split, lines in (("train", 600), ("valid", 60), ("test", 60)):
        with open(folder / f"ptb.{split}.txt", "w") as f:
            for _ in range(lines):
                word, sentence = rng.randrange(100), []
                for _ in range(15):
                    sentence.append(f"w{word}")
                    word = rng.choice(successors[word])
                f.write(" ".join(sentence) + "\n")


@pytest.fixture
def workdir(tmp_path):
    data = tmp_path / "datasets"
    data.mkdir()
    (data / "ml-100k").symlink_to(ml100k())
    write_corpus(data / "simple-examples" / "data")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "nasp").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "cli.py"}" "$@"\n')
    (bindir / "nasp").chmod(0o755)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}", NASP_DATA_DIR=str(data),
               OMP_NUM_THREADS="1", NASP_QUIET="1", MPLBACKEND="Agg")
    return tmp_path, env


def run(args: list[str], cwd: Path, env: dict) -> None:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"{args[-1]}\nexit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def test_readme_has_blocks():
    assert blocks("python") and blocks("bash")
    tags = {tag for tag, _ in BLOCK.findall(README.read_text())}
    assert tags <= {"python", "bash"}, f"untested block languages: {tags - {'python', 'bash'}}"
    assert README.read_text().count("```") == 2 * len(BLOCK.findall(README.read_text())), "a block without a language"


def test_quick_start_targets_exist():
    quick = [code for code in blocks("bash") if is_quick_start(code)]
    assert len(quick) == 1
    lines = [line.split("#")[0].split() for line in quick[0].splitlines() if line.strip()]
    targets = [words[1] for words in lines]
    assert all(words[0] == "make" for words in lines) and targets == ["search", "test"]
    makefile = (ROOT / "Makefile").read_text()
    for target in targets:
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no target {target}"


@pytest.mark.smoke
@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_block_runs(index, workdir):
    cwd, env = workdir
    script = cwd / f"readme_{index}.py"
    script.write_text(blocks("python")[index])
    run([sys.executable, str(script)], cwd, env)


@pytest.mark.smoke
@pytest.mark.parametrize("index", [i for i, code in enumerate(blocks("bash")) if not is_quick_start(code)])
def test_bash_block_runs(index, workdir):
    cwd, env = workdir
    code = blocks("bash")[index]
    assert "nasp " in code
    run(["bash", "-euo", "pipefail", "-c", code], cwd, env)


LINK = re.compile(r"\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    return [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
            for title in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path) if path else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in anchors(linked)):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"
