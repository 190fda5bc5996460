"""What an RNN search exports is the cell it trained and validated (issue: Core 2, part 1)."""
import json
import math

import torch
from click.testing import CliRunner

from nasp.cli import main
from nasp.mixing import SinglePath
from nasp.rnn.corpus import batchify, load_corpus
from nasp.rnn.genotypes import RecurrentGenotype
from nasp.rnn.model import RNNSearchNetwork, evaluate_nll
from nasp.rnn.spaces import SPACES


def test_nasp_exports_the_projection_it_trained_and_its_score(corpus_dir, tmp_path, tiny):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["rnn", "search", "--data", str(corpus_dir), "--epochs", "2", "--seed", "1",
                                       "--arch-lr", "0.05", "--out", str(out), "--json", *tiny])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    arch = json.loads((out / "arch.json").read_text())
    opts = json.loads((out / "config.json").read_text())["options"]
    corpus = load_corpus(str(corpus_dir))
    torch.manual_seed(0)
    net = RNNSearchNetwork(len(corpus.vocab), SPACES.get(opts["space"]), opts["emb_size"], opts["hidden_size"])
    net.load_state_dict(torch.load(out / "checkpoint.pt", weights_only=True)["network"])
    assert net.export(net.project()) == arch
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["architecture"] == arch
    assert net.derive() != arch, "pick another seed: both rules agree on this cell, the test would not discriminate"
    net.set_architecture(net.alphas_of(RecurrentGenotype.from_json(arch)))
    net.eval()
    with net.using(SinglePath()):
        nll = evaluate_nll(net, batchify(corpus.valid, opts["eval_batch_size"], torch.device("cpu"), "valid"), opts["bptt"])
    assert math.exp(nll) == summary["valid_ppl"]
