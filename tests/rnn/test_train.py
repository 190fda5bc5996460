import numpy as np
import torch
from torch import nn

from nasp.rnn import GENOTYPES, Dropouts, read_corpus
from nasp.rnn.train import ParameterAverage, Trainer, TrainConfig, bptt_lengths
from nasp.runs import RunDir


def _cfg(**kw):
    base = dict(epochs=4, batch_size=8, eval_batch_size=8, bptt=6, emb_size=16, hidden_size=16, lr=10.0,
                dropouts=Dropouts(0.1, 0.05, 0.1, 0.05, 0.0), nonmono=1)
    base.update(kw)
    return TrainConfig(**base)


def test_retraining_lowers_perplexity_and_reports_the_summary(corpus_dir, tmp_path):
    torch.manual_seed(0)
    corpus = read_corpus(corpus_dir)
    run = RunDir(tmp_path / "run")
    summary = Trainer(corpus, GENOTYPES.get("DARTS_V2"), _cfg(), run, torch.device("cpu")).fit()
    assert summary["initial_valid_ppl"] > 1.5 * summary["valid_ppl"]
    assert summary["valid_ppl"] < len(corpus.vocab) and summary["test_ppl"] < len(corpus.vocab)
    # 16 x 16 tied: embedding + decoder bias + W0 (32 x 32) + 8 node matrices (16 x 32)
    assert summary["params"] == len(corpus.vocab) * 17 + 32 * 32 + 8 * 16 * 32
    assert (tmp_path / "run" / "model.pt").exists() and (tmp_path / "run" / "checkpoint.pt").exists()
    rows = run.read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]  # epochs count from 1


def test_variable_bptt_lengths_cover_the_stream_and_are_reproducible():
    a = bptt_lengths(1000, 35, 20, np.random.default_rng([0, 3]))
    b = bptt_lengths(1000, 35, 20, np.random.default_rng([0, 3]))
    assert a == b and sum(a) >= 1000 and min(a) >= 5 and max(a) <= 55
    assert len(set(a)) > 3


def test_parameter_average_is_the_mean_of_the_iterates():
    p = nn.Parameter(torch.zeros(3))
    avg = ParameterAverage([p])
    with torch.no_grad():
        avg.start()
        for value in (1.0, 2.0, 3.0):
            p.fill_(value)
            avg.update()
    with avg.swapped():
        assert torch.allclose(p, torch.full((3,), 1.5))  # mean of 0, 1, 2, 3
    assert torch.equal(p.detach(), torch.full((3,), 3.0))


def test_switch_to_averaged_sgd_when_validation_stalls(corpus_dir, tmp_path, monkeypatch):
    corpus = read_corpus(corpus_dir)
    trainer = Trainer(corpus, GENOTYPES.get("DARTS_V1"), _cfg(epochs=4, nonmono=1), RunDir(tmp_path / "r"),
                      torch.device("cpu"))
    losses = iter([5.0, 4.0, 4.5, 4.2])  # epoch 2 is worse than the best before the last one
    monkeypatch.setattr(trainer.stepper, "step", lambda seg, valid: {"train_loss": torch.tensor(1.0)})
    monkeypatch.setattr(trainer, "nll", lambda data: next(losses, 4.0))  # the first is the untrained model's
    trainer.fit()
    assert trainer.asgd_epoch == 2


def test_untied_sizes_use_a_projection_and_keep_weight_tying():
    from nasp.rnn import RecurrentModel, Segment, LMLoss

    torch.manual_seed(0)
    model = RecurrentModel(30, GENOTYPES.get("DARTS_V2"), emb_size=8, hidden_size=12)
    assert model.decoder.weight is model.encoder.weight and model.proj is not None
    seg = Segment("train", 0, torch.randint(0, 30, (5, 3)), torch.randint(0, 30, (5, 3)))
    logits, hidden, raw = model(seg.inputs, model.init_hidden(3))
    assert logits.shape == (15, 30) and hidden.shape == (3, 12) and raw.shape == (5, 3, 12)
    LMLoss(tar=1e-3)(model, seg).backward()
    assert all(p.grad is not None for p in model.parameters())
