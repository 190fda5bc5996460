import pytest
import torch

from nasp import Architect
from nasp.mixing import MixPlan, Mixing
from nasp.rnn import SPACES, Dropouts, LMLoss, RecurrentGenotype, RNNSearchNetwork, Segment, read_corpus
from nasp.rnn import model as rnn_model
from nasp.rnn import search as rnn_search
from nasp.rnn.search import SearchConfig
from nasp.runs import RunDir

NO_DROPOUT = Dropouts(0.0, 0.0, 0.0, 0.0, 0.0)


def _net(space="small", dropouts=NO_DROPOUT, dtype=torch.float64):
    torch.manual_seed(0)
    return RNNSearchNetwork(20, SPACES.get(space), 6, 6, dropouts).to(dtype)


def _segment(index=0, stream="valid", seed=1):
    g = torch.Generator().manual_seed(seed)
    return Segment(stream, index, torch.randint(0, 20, (4, 3), generator=g), torch.randint(0, 20, (4, 3), generator=g))


def test_nasp_arch_gradient_equals_full_autograd_at_the_discrete_point(monkeypatch):
    net = _net("darts")
    arch = Architect(net.arch_parameters(), discretize=net.discretizers())
    seg = _segment()
    with arch.discrete() as (projected,):
        assert (projected.sum(-1) > 0).sum() == 8  # k = 1: one kept edge per node
        net.mixing = Mixing.ACTIVE
        fast = torch.autograd.grad(LMLoss()(net, seg), [net.alpha])[0]
        every = [list(range(4))] * net.alpha.shape[0]  # reference: every candidate with autograd
        monkeypatch.setattr(rnn_model, "plan", lambda a, m: MixPlan(a, every, True, Mixing.ACTIVE))
        full = torch.autograd.grad(LMLoss()(net, seg), [net.alpha])[0]
    assert torch.allclose(fast, full, atol=1e-12)
    assert (fast != 0).all()  # every (predecessor, activation) gets a gradient


def test_weight_step_runs_only_selected_edges_and_arch_step_runs_others_in_backward(monkeypatch):
    net = _net("darts")
    calls = []
    original = net.lm.cell.gates

    def spy(node, s, h_mask):
        calls.append((net.mixing, s.shape[0] if s.dim() == 3 else 1, torch.is_grad_enabled()))
        return original(node, s, h_mask)

    monkeypatch.setattr(net.lm.cell, "gates", spy)
    arch = Architect(net.arch_parameters(), discretize=net.discretizers())
    with arch.discrete():
        net.mixing = Mixing.SINGLE
        LMLoss()(net, _segment()).backward()
        net.mixing = Mixing.ACTIVE
        loss = LMLoss()(net, _segment())
        forward = list(calls)
        loss.backward()
    single = [c for c in forward if c[0] is Mixing.SINGLE]
    active = [c for c in forward if c[0] is Mixing.ACTIVE]
    assert len(single) == 4 * 8 and all(n == 1 for _, n, _ in single)  # one predecessor per node and step
    assert [(n, grad) for _, n, grad in active] == [(1, True)] * (4 * 8)  # the forward: the selected edges only
    backward = calls[len(forward):]
    # the backward: every other predecessor once, without autograd, for its alphas' gradient
    assert [(n, grad) for _, n, grad in backward] == [(1, False)] * (4 * sum(range(8)))
    assert all(a.grad is not None and (a.grad != 0).all() for a in net.arch_parameters())


def test_loss_carries_hidden_state_per_stream_without_advancing_on_repeats():
    net = _net()
    net.mixing = Mixing.SINGLE
    loss = LMLoss()
    a0 = loss(net, _segment(0, "train"))
    start0, last0 = loss._carry["train"][1:]
    assert torch.count_nonzero(start0) == 0
    loss(net, _segment(1, "train", seed=2))
    assert torch.equal(loss._carry["train"][1], last0)  # segment 1 starts where segment 0 ended
    first_last = loss._carry["train"][2]
    loss(net, _segment(1, "train", seed=2))  # evaluated again (darts2): same start, same result
    assert torch.equal(loss._carry["train"][1], last0)
    assert torch.equal(loss._carry["train"][2], first_last)
    assert torch.equal(loss(net, _segment(0, "train")), a0)  # index 0 restarts from zeros
    assert "valid" not in loss._carry


def test_derive_picks_best_edge_per_node():
    net = _net("small")
    with torch.no_grad():
        net.alpha.zero_()
        space = net.space
        net.alpha[space.row(0, 0), 2] = 1.0
        net.alpha[space.row(1, 1), 0] = 1.0
        net.alpha[space.row(2, 0), 3] = 1.0
        net.alpha[space.row(3, 2), 1] = 1.0
    g = RecurrentGenotype.from_json(net.derive(), space=space)
    assert g.recurrent == (("sigmoid", 0), ("tanh", 1), ("identity", 0), ("relu", 2))


@pytest.mark.parametrize("strategy", ["nasp", "no-auto", "darts", "darts2", "random"])
def test_one_search_epoch_per_strategy_gives_a_valid_genotype(corpus_dir, tmp_path, strategy):
    torch.manual_seed(0)
    corpus = read_corpus(corpus_dir)
    space = "small" if strategy == "darts2" else "darts"  # darts2 is ~4x slower: a 4-node space keeps it quick
    cfg = SearchConfig(strategy=strategy, space=space, epochs=1, batch_size=16, eval_batch_size=16, bptt=4,
                       emb_size=8, hidden_size=8, candidates=1)
    result = rnn_search.search(corpus, cfg, RunDir(tmp_path / strategy), torch.device("cpu"))
    genotype = result["genotype"]
    genotype.validate(space=SPACES.get(space))
    s = result["summary"]
    assert {"search_seconds", "seconds_per_epoch", "peak_memory_mb", "valid_ppl"} <= set(s)
    assert 1 < s["valid_ppl"] < 2 * len(corpus.vocab)


class Stop(Exception):
    pass


def test_resume_after_kill_gives_the_same_search(corpus_dir, tmp_path, monkeypatch):
    corpus = read_corpus(corpus_dir)
    cfg = SearchConfig(strategy="nasp", space="small", epochs=3, batch_size=8, eval_batch_size=8, bptt=8,
                       emb_size=8, hidden_size=8)

    original = rnn_search.run_search

    def run(out, resume=False, stop_after=None):
        torch.manual_seed(0)

        def killed(*args, **kwargs):
            watch = kwargs.pop("on_epoch", None)

            def on_epoch(epoch, row):
                if watch is not None:
                    watch(epoch, row)
                if epoch == stop_after:
                    raise Stop

            return original(*args, on_epoch=on_epoch, **kwargs)

        monkeypatch.setattr(rnn_search, "run_search", killed)
        run_dir = RunDir(out, resume=resume)
        if not resume:
            run_dir.write_config({})
        try:
            return rnn_search.search(corpus, cfg, run_dir, torch.device("cpu"))
        except Stop:
            return None

    full = run(tmp_path / "full")
    assert run(tmp_path / "killed", stop_after=0) is None
    resumed = run(tmp_path / "killed", resume=True)
    assert resumed["genotype"] == full["genotype"]
    assert [r["valid_ppl"] for r in resumed["rows"]] == [r["valid_ppl"] for r in full["rows"]]

