import pytest
import torch

from nasp import NaspError
from nasp.rnn.corpus import EOS, UNK, batchify, load_corpus, read_corpus, resolve_corpus, segments


def test_vocabulary_comes_from_train_with_eos_and_unk(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "ptb.train.txt").write_text(" a b c\n\n b a\n")
    (folder / "ptb.valid.txt").write_text("a z\n")
    (folder / "ptb.test.txt").write_text("c\n")
    corpus = read_corpus(folder)
    v = corpus.vocab
    assert v.words == [EOS, UNK, "a", "b", "c"]
    assert corpus.train.tolist() == [2, 3, 4, 0, 3, 2, 0]  # blank line skipped, <eos> per line
    assert corpus.valid.tolist() == [2, 1, 0]  # unseen 'z' -> <unk>
    assert corpus.test.tolist() == [4, 0]


def test_plain_split_names_and_known_name_under_data_root(tmp_path, make_corpus):
    make_corpus(tmp_path / "plain", prefix="")
    assert len(read_corpus(tmp_path / "plain").vocab) > 5
    root = tmp_path / "root"
    make_corpus(root / "simple-examples" / "data")
    assert resolve_corpus("ptb", root) == root / "simple-examples" / "data"
    assert resolve_corpus(str(root / "simple-examples")) == root / "simple-examples" / "data"
    assert load_corpus("ptb", root).train.numel() > 100


def test_missing_split_is_named(tmp_path, make_corpus):
    folder = make_corpus(tmp_path / "c")
    (folder / "ptb.valid.txt").unlink()
    with pytest.raises(NaspError, match=r"missing valid split: expected ptb.valid.txt or valid.txt"):
        read_corpus(folder)


def test_empty_corpus_and_bad_paths(tmp_path, make_corpus):
    folder = make_corpus(tmp_path / "c")
    (folder / "ptb.train.txt").write_text("\n  \n")
    with pytest.raises(NaspError, match=r"ptb.train.txt: empty corpus"):
        read_corpus(folder)
    with pytest.raises(NaspError, match="is a file"):
        resolve_corpus(str(folder / "ptb.test.txt"))
    with pytest.raises(NaspError, match="no such folder, and not a known data set"):
        resolve_corpus(str(tmp_path / "nope"))


def test_batchify_and_segments():
    ids = torch.arange(23)
    data = batchify(ids, 4)
    assert data.shape == (5, 4)
    assert data[:, 1].tolist() == [5, 6, 7, 8, 9]  # each column is a contiguous stream
    segs = segments(data, 2, "train")
    assert [s.index for s in segs] == [0, 1]
    assert [s.inputs.size(0) for s in segs] == [2, 2]
    assert torch.equal(segs[0].targets, data[1:3])
    var = segments(data, 2, "train", lengths=[3, 3])
    assert [s.inputs.size(0) for s in var] == [3, 1]
    with pytest.raises(NaspError, match="too few for batch size 16"):
        batchify(ids, 16, split="train")
