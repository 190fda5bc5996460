import pytest
import torch
from torch import nn

from nasp import NaspError, SearchNetwork, mix, plan
from nasp.mixing import Mixing
from nasp.strategies import STRATEGIES, SearchProblem, build_strategy, search_strategy_names


class TinyNet(SearchNetwork):
    """Two edges in sequence, three candidate ops each (float64, no batch norm)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.ops1 = nn.ModuleList(nn.Linear(3, 3).double() for _ in range(3))
        self.ops2 = nn.ModuleList(nn.Linear(3, 1).double() for _ in range(3))
        self.alpha = nn.Parameter(torch.rand(2, 3, generator=g, dtype=torch.float64))

    def arch_parameters(self):
        return [self.alpha]

    def forward(self, x):
        p = plan(self.alpha, self.mixing)
        h = mix([lambda op=op: torch.tanh(op(x)) for op in self.ops1], p, 0)
        return mix([lambda op=op: op(h) for op in self.ops2], p, 1).squeeze(-1)

    def derive(self, alphas=None):
        return (alphas or self.arch_parameters())[0].argmax(-1).tolist()


def _mse(net, batch):
    return nn.functional.mse_loss(net(batch[0]), batch[1])


def _problem(net, **kw):
    return SearchProblem(network=net, loss=_mse, weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1), **kw)


def _batches():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 3, generator=g, dtype=torch.float64)
    y = torch.randn(32, generator=g, dtype=torch.float64)
    return (x[:16], y[:16]), (x[16:], y[16:])


def test_nasp_arch_gradient_equals_full_autograd_gradient():
    net = TinyNet()
    train, valid = _batches()
    with torch.no_grad():
        net.alpha.copy_(torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64))
    net.mixing = Mixing.ACTIVE
    fast = torch.autograd.grad(_mse(net, valid), [net.alpha])[0]
    # reference: plain weighted sum of every op with full autograd
    w = net.alpha
    h = sum(w[0, k] * torch.tanh(op(valid[0])) for k, op in enumerate(net.ops1))
    out = sum(w[1, k] * op(h) for k, op in enumerate(net.ops2)).squeeze(-1)
    full = torch.autograd.grad(nn.functional.mse_loss(out, valid[1]), [net.alpha])[0]
    assert torch.allclose(fast, full)
    assert (fast != 0).all()  # every op's coefficient gets a gradient


def test_nasp_weight_step_touches_only_selected_ops():
    net = TinyNet()
    strategy = build_strategy("nasp", _problem(net), epochs=1)
    before = {n: p.detach().clone() for n, p in net.named_parameters() if n != "alpha"}
    train, valid = _batches()
    strategy.step(train, valid)
    chosen = strategy.architect.chosen()[0].tolist()
    for name, p in net.named_parameters():
        if name == "alpha":
            continue
        edge, k = (0 if name.startswith("ops1") else 1), int(name.split(".")[1])
        changed = not torch.equal(before[name], p.detach())
        assert changed == (k == chosen[edge]), name


def test_a_weight_step_differentiates_the_weights_only_and_leaves_the_rest_trainable():
    """During the weight step's forward the alphas are frozen (no graph for them; ops see frozen
    weights and take their cheaper paths); afterwards they are trainable again, untouched."""
    from nasp.mixing import Softmax
    from nasp.strategies.base import differentiating_only

    net = TinyNet()
    seen = []
    net.register_forward_pre_hook(lambda module, args: seen.append(net.alpha.requires_grad))
    strategy = build_strategy("darts", _problem(net), epochs=1)
    alpha = net.alpha.detach().clone()
    train, _ = _batches()
    loss = strategy.weight_step(train, Softmax())
    assert seen == [False] and net.alpha.requires_grad and net.alpha.grad is None
    assert torch.equal(net.alpha, alpha) and torch.isfinite(loss)
    with pytest.raises(RuntimeError, match="inside"):
        with differentiating_only(net, list(net.ops1.parameters())):
            assert not net.alpha.requires_grad and not net.ops2[0].weight.requires_grad
            raise RuntimeError("inside")
    assert net.alpha.requires_grad and net.ops2[0].weight.requires_grad  # restored on an error too


@pytest.mark.parametrize("name", search_strategy_names("core"))
def test_every_search_strategy_solves_the_feature_transform_example(feature_transform, name):
    epochs = feature_transform.EPOCHS.get(name, 30)  # gdas: sampled paths need more arch steps
    candidates = 40 if "candidates" in STRATEGIES.get(name).reads else None
    chosen = feature_transform.search(name, features=2, epochs=epochs, seed=0, candidates=candidates)
    assert chosen == feature_transform.TRUTH[:2]


def test_the_example_runs_every_search_strategy_and_only_those():
    assert set(search_strategy_names()) == set(STRATEGIES.names()) - {"fixed"}
    # every one searches a network of your own but pcdarts, which needs a CNN cell's channels and edges
    assert set(search_strategy_names("core")) == set(search_strategy_names()) - {"pcdarts"}
    assert "pcdarts" in search_strategy_names("cnn") and "pcdarts" not in search_strategy_names("sif")
    assert {"nasp", "no-auto", "darts", "darts2", "random", "gdas"} <= set(search_strategy_names())


def test_registry_lists_builtins_and_rejects_unknown_names():
    assert {"nasp", "no-auto", "darts", "darts2", "random", "gdas"} <= set(STRATEGIES.names())
    with pytest.raises(NaspError, match="unknown strategy 'enas'; choose one of: .*nasp"):
        build_strategy("enas", _problem(TinyNet()), epochs=1)


def test_random_search_keeps_the_best_candidate_on_validation():
    net = TinyNet()
    problem = _problem(net, metric="score", options={"candidates": 4, "seed": 3})
    strategy = build_strategy("random", problem, epochs=8)
    train, _ = _batches()
    scores = [5.0, 2.0, 7.0, 3.0]
    seen = []
    for epoch in range(8):
        strategy.begin_epoch(epoch)
        strategy.step(train, None)
        seen.append(net.alpha.detach().clone())
        strategy.end_epoch(epoch, {"score": scores[epoch // 2]})
    assert [h["score"] for h in strategy.history] == scores
    assert torch.equal(strategy.derive_alphas()[0], seen[3])  # candidate 1 (epochs 2-3) won
    assert all(((a == 0) | (a == 1)).all() and (a.sum(-1) == 1).all() for a in seen)


def _drive_warmup(strategy, scores):
    """Run ``strategy`` through epochs with the given validation scores; returns which epochs warmed up."""
    train, valid = _batches()
    warm = []
    for epoch, score in enumerate(scores):
        strategy.begin_epoch(epoch)
        alpha = strategy.network.alpha.detach().clone()
        strategy.step(train, valid)
        warm.append(strategy.describe()["warmup"])
        assert torch.equal(alpha, strategy.network.alpha.detach()) == warm[-1]  # alpha only moves after warm-up
        strategy.end_epoch(epoch, {"valid_loss": score})
    return warm


def test_nasp_auto_warmup_ends_when_validation_stops_improving_and_resumes():
    scores = [1.0, 0.9, 0.85, 0.8496, 0.7, 0.6, 0.5, 0.4]  # epoch 3 improves by < 0.1%: the warm-up ends there
    strategy = build_strategy("nasp", _problem(TinyNet(), options={"warmup_epochs": "auto"}), epochs=len(scores))
    assert _drive_warmup(strategy, scores) == [True] * 4 + [False] * 4

    # a resumed strategy continues where the warm-up was
    first = build_strategy("nasp", _problem(TinyNet(), options={"warmup_epochs": "auto"}), epochs=len(scores))
    assert _drive_warmup(first, scores[:2]) == [True, True]
    resumed = build_strategy("nasp", _problem(TinyNet(), options={"warmup_epochs": "auto"}), epochs=len(scores))
    resumed.load_state_dict(first.state_dict())
    assert resumed.warmup_best == 0.9 and not resumed.warmup_over

    # a metric that keeps improving still leaves the last epoch to the search
    always = build_strategy("nasp", _problem(TinyNet(), options={"warmup_epochs": "auto"}), epochs=4)
    assert _drive_warmup(always, [4.0, 3.0, 2.0, 1.0]) == [True, True, True, False]


@pytest.mark.parametrize("warmup, epochs", [(3, 3), (5, 2), (-1, 4), ("soon", 4), ("auto", 1)])
def test_nasp_rejects_a_warmup_that_leaves_no_search(warmup, epochs):
    with pytest.raises(NaspError, match="--warmup-epochs"):
        build_strategy("nasp", _problem(TinyNet(), options={"warmup_epochs": warmup}), epochs=epochs)


@pytest.mark.parametrize("name, options, eta, ignored", [
    ("darts", {"candidates": 3}, 0.0, ["candidates"]),
    ("darts", {"warmup_epochs": 2}, 0.5, ["warmup_epochs", "eta"]),
    ("random", {"warmup_epochs": "auto", "candidates": 2}, 0.0, ["warmup_epochs"]),
    ("nasp", {"candidates": 4, "warmup_epochs": 1}, 0.5, ["candidates"]),
    ("gdas", {}, 0.0, []),
    ("bayesnas", {"candidates": 3, "warmup_epochs": 1}, 0.5, ["warmup_epochs", "candidates", "eta"]),
])
def test_an_option_the_strategy_ignores_is_a_warning_through_its_capability_flags(name, options, eta, ignored, caplog):
    net = TinyNet()
    problem = SearchProblem(network=net, loss=_mse, weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1),
                            options=options, eta=eta)
    assert STRATEGIES.get(name).ignored_options(problem) == ignored
    with caplog.at_level("WARNING", logger="nasp"):
        build_strategy(name, problem, 4)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == len(ignored)
    for option, message in zip(ignored, warned):
        assert f"strategy {name!r} ignores --{option.replace('_', '-')}" in message


def test_unknown_search_options_are_refused():
    with pytest.raises(ValueError, match="unknown search options"):
        SearchProblem(network=TinyNet(), loss=_mse, weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1),
                      options={"candidate": 3})


class _HostReads:
    """Counts the reads of the architecture onto the host (a device-to-host copy each on a GPU):
    projections by the architect, and non-zero entries read straight off an alpha."""

    def __init__(self, monkeypatch, net: SearchNetwork) -> None:
        import nasp.architect
        import nasp.mixing

        self.count = 0
        alphas = {id(a) for a in net.arch_parameters()}
        rows, project = nasp.mixing.nonzero_rows, nasp.architect.Architect._project_on_host

        def counted_rows(value):
            self.count += id(value) in alphas
            return rows(value)

        def counted_project(arch):
            self.count += 1
            return project(arch)

        monkeypatch.setattr(nasp.mixing, "nonzero_rows", counted_rows)
        monkeypatch.setattr(nasp.architect.Architect, "_project_on_host", counted_project)

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


def _epoch(strategy, epoch: int, steps: int, batches=None) -> None:
    """One epoch of ``steps`` steps on (train, valid) ``batches`` (default ``_batches()``), scored by the MSE on valid."""
    train, valid = batches or _batches()
    strategy.begin_epoch(epoch)
    for _ in range(steps):
        strategy.step(train, valid)
    with strategy.evaluation():
        metric = float(_mse(strategy.network, valid))
    strategy.end_epoch(epoch, {"valid_loss": metric})


def test_the_architecture_is_read_to_the_host_once_an_epoch_or_once_a_nasp_step(monkeypatch):
    """Fixed training and random search read the non-zero candidates once an epoch (not once a
    forward pass); the NASP warm-up reads nothing (its samples are drawn on the host); a NASP
    search step projects once, its architecture step reusing the last weight step's projection."""
    for name in ("fixed", "random"):
        net = TinyNet()
        reads = _HostReads(monkeypatch, net)
        strategy = build_strategy(name, _problem(net, options={"candidates": 1}), epochs=2)
        for epoch in range(2):
            _epoch(strategy, epoch, steps=4)
            assert reads.take() == 1, (name, epoch)
    net = TinyNet()
    reads = _HostReads(monkeypatch, net)
    strategy = build_strategy("nasp", _problem(net, options={"warmup_epochs": 1}), epochs=3)
    _epoch(strategy, 0, steps=4)
    assert reads.take() == 1  # the evaluation's projection only
    for epoch in (1, 2):
        _epoch(strategy, epoch, steps=4)
        assert reads.take() == 4 + 2  # one a step, the epoch's first step one more, the evaluation


def test_nasp_steps_reusing_the_projection_match_steps_that_project_afresh():
    """Alphas start near ties and move fast, so the selection changes along the way."""
    runs, selections = [], set()
    for forget in (False, True):
        torch.manual_seed(0)
        net = TinyNet()
        with torch.no_grad():
            net.alpha.copy_(torch.tensor([[0.5, 0.501, 0.499], [0.5, 0.499, 0.501]], dtype=torch.float64))
        strategy = build_strategy("nasp", _problem(net, arch_lr=0.01), epochs=1)
        train, valid = _batches()
        strategy.begin_epoch(0)
        for _ in range(8):
            if forget:
                strategy.architect.forget()
            strategy.step(train, valid)
            selections.add(tuple(strategy.architect.chosen()[0].tolist()))
        runs.append([p.detach().clone() for p in net.parameters()])
    assert len(selections) > 1
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_a_reused_projection_is_dropped_when_an_alpha_is_written(monkeypatch):
    net = TinyNet()
    reads = _HostReads(monkeypatch, net)
    arch = build_strategy("nasp", _problem(net), epochs=1).architect
    with arch.discrete():
        pass
    with arch.discrete(reuse=True):
        pass
    assert reads.take() == 1
    with torch.no_grad():
        net.alpha[0] = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)  # an in-place write
    with arch.discrete(reuse=True) as (projected,):
        assert projected[0].tolist() == [1.0, 0.0, 0.0]
    assert reads.take() == 1
    net.alpha.data[0] = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)  # unseen by the version counter
    arch.forget()
    with arch.discrete(reuse=True) as (projected,):
        assert projected[0].tolist() == [0.0, 1.0, 0.0]
    assert reads.take() == 1


class TwoStarts(TinyNet):
    """TinyNet whose local search may start from op 0 or op 2 on both edges."""

    def starting_architectures(self):
        return [[torch.nn.functional.one_hot(torch.full((2,), k), 3).double()] for k in (0, 2)]


def _drive_local(strategy, scores, first_epoch=0):
    """Run a local search through epochs with the given validation scores; per epoch: the
    architecture and weights it trained from, and what it described after the epoch."""
    train, _ = _batches()
    rows = []
    for epoch, score in enumerate(scores, first_epoch):
        strategy.begin_epoch(epoch)
        net = strategy.network
        row = {"alpha": net.alpha.detach().clone(), "start": {k: v.clone() for k, v in net.state_dict().items()}}
        strategy.step(train, None)
        strategy.end_epoch(epoch, {"score": score})
        rows.append({**row, **strategy.describe(), "end": {k: v.clone() for k, v in net.state_dict().items()}})
    return rows


def _local(warmup=2, epochs=8):
    torch.manual_seed(0)  # nn.Linear's initial weights
    return build_strategy("local", _problem(TwoStarts(), metric="score", higher_is_better=True,
                                            options={"warmup_epochs": warmup}), epochs=epochs)


@pytest.mark.parametrize("scores, winner", [([1.0, 2.0, 3.0, 4.0], 1), ([1.0, 5.0, 3.0, 4.0], 0)])
def test_local_search_warms_up_each_start_from_the_weights_as_built_and_keeps_the_best(scores, winner):
    """Two starts, two warm-up epochs each: the second trains from the weights as built (not the
    first's), and the one that scores best at the end of its warm-up becomes the incumbent with
    the weights it trained; the row steps then start from it."""
    strategy = _local()
    built = {k: v.clone() for k, v in strategy.network.state_dict().items()}
    starts = [a[0] for a in strategy.network.starting_architectures()]
    rows = _drive_local(strategy, [*scores, 0.0])
    assert [r.get("trial") for r in rows] == ["start 0", "start 0", "start 1", "start 1", "stay"]
    assert all(r["warmup"] for r in rows[:4]) and not rows[4]["warmup"]
    assert [torch.equal(r["alpha"], starts[k]) for r, k in zip(rows, (0, 0, 1, 1))] == [True] * 4
    for key in ("ops1.0.weight", "ops2.0.weight"):  # trained by start 0, back as built for start 1
        assert torch.equal(rows[2]["start"][key], built[key]) and not torch.equal(rows[1]["end"][key], built[key])
    assert rows[3].get("kept") == f"start {winner}"
    assert torch.equal(strategy.incumbent[0], starts[winner]) and torch.equal(rows[4]["alpha"], starts[winner])
    trained = rows[1 + 2 * winner]["end"]  # the winner's weights at the end of its warm-up
    assert all(torch.equal(rows[4]["start"][k], trained[k]) for k in trained if k != "alpha")


@pytest.mark.parametrize("stop", [1, 3])  # before the second start (from the weights as built) / the choice
def test_local_search_with_several_starts_resumes_mid_warm_up_and_has_auto_per_start(stop):
    scores = [1.0, 5.0, 3.0, 4.0, 0.5, 0.6, 0.7, 0.8]  # the first start wins
    whole = _local()
    rows = _drive_local(whole, scores)
    first = _local()
    _drive_local(first, scores[:stop])
    resumed = _local()
    resumed.network.load_state_dict(first.network.state_dict())
    resumed.load_state_dict(first.state_dict())
    again = _drive_local(resumed, scores[stop:], first_epoch=stop)
    assert [r.get("trial") for r in again] == [r.get("trial") for r in rows[stop:]]
    assert all(torch.equal(a["end"][k], b["end"][k]) for a, b in zip(again, rows[stop:]) for k in a["end"])
    assert torch.equal(resumed.incumbent[0], whole.incumbent[0]) and rows[3].get("kept") == "start 0"
    # "auto": each start until its score stops improving (by 0.1%), then the next from the weights as built
    auto = _local(warmup="auto", epochs=10)
    rows = _drive_local(auto, [1.0, 2.0, 2.0, 3.0, 3.0, 0.0])
    assert [r.get("trial") for r in rows] == ["start 0"] * 3 + ["start 1"] * 2 + ["stay"]
    assert rows[4].get("kept") == "start 1" and not rows[5]["warmup"]


def test_local_search_without_warm_up_starts_from_the_first_start():
    strategy = _local(warmup=0, epochs=3)
    rows = _drive_local(strategy, [1.0, 2.0, 3.0])
    assert rows[0].get("trial") == "stay" and torch.equal(rows[0]["alpha"], strategy.network.starting_architectures()[0][0])


def _confirming(epochs=8):
    torch.manual_seed(0)
    return build_strategy("local", _problem(TwoStarts(), metric="score", higher_is_better=True,
                                            options={"warmup_epochs": 0, "confirm": 1}), epochs=epochs)


@pytest.mark.parametrize("stay, change, kept, row0", [(1.5, 3.0, "row 0 candidate 1 (confirmed)", 1),
                                                      (1.5, 1.2, "stay (row 0 candidate 1 not confirmed)", 0)])
def test_a_confirmed_change_trains_on_beside_the_stay_and_must_still_win(stay, change, kept, row0):
    """``confirm`` 1: the row step's winner (candidate 1) and the stay each train one trial more,
    from the weights their trials ended with; the change replaces the incumbent only if it still
    beats the stay by the margin, else the stay goes on with its own weights."""
    strategy = _confirming()
    rows = _drive_local(strategy, [1.0, 2.0, 0.5, stay, change, 0.0])
    assert [r.get("trial") for r in rows] == ["stay", "row 0 candidate 1", "row 0 candidate 2", "confirm stay",
                                              "confirm row 0 candidate 1", "stay"]
    assert rows[2].get("kept") == "row 0 candidate 1 to confirm" and rows[4].get("kept") == kept
    weights = [k for k in rows[0]["end"] if k != "alpha"]
    assert all(torch.equal(rows[3]["start"][k], rows[0]["end"][k]) for k in weights)  # the stay's trial weights
    assert all(torch.equal(rows[4]["start"][k], rows[1]["end"][k]) for k in weights)  # the change's
    assert int(strategy.incumbent[0][0].argmax()) == row0
    winner = rows[4] if row0 == 1 else rows[3]
    assert all(torch.equal(rows[5]["start"][k], winner["end"][k]) for k in weights)
    with pytest.raises(NaspError, match=r"--confirm -1: must be an integer >= 0"):
        build_strategy("local", _problem(TinyNet(), options={"confirm": -1}), epochs=3)


def test_a_confirmation_starts_only_while_its_epochs_are_left():
    """With one epoch left after the row step, no confirmation (it could not be a fair pair): the
    change is decided as without ``confirm``."""
    strategy = _confirming(epochs=4)
    rows = _drive_local(strategy, [1.0, 2.0, 0.5, 0.0])
    assert rows[2].get("kept") == "row 0 candidate 1" and rows[3].get("trial") == "stay"


def test_a_local_search_resumes_in_the_middle_of_a_confirmation():
    scores = [1.0, 2.0, 0.5, 1.5, 3.0, 0.0, 0.1, 0.2]
    whole = _confirming()
    rows = _drive_local(whole, scores)
    first = _confirming()
    _drive_local(first, scores[:4])  # stopped after the stay's confirmation trial
    resumed = _confirming()
    resumed.network.load_state_dict(first.network.state_dict())
    resumed.load_state_dict(first.state_dict())
    again = _drive_local(resumed, scores[4:], first_epoch=4)
    assert [r.get("trial") for r in again] == [r.get("trial") for r in rows[4:]]
    assert all(torch.equal(a["end"][k], b["end"][k]) for a, b in zip(again, rows[4:]) for k in a["end"])
    assert torch.equal(resumed.incumbent[0], whole.incumbent[0])


def test_local_search_trials_take_the_first_part_of_their_epoch_with_a_trial_fraction():
    """``trial_fraction`` 0.5: every trial (the stay's too) steps through the first ceil(n / 2)
    batches of its epoch, a warm-up epoch through all; its ramp spans a part of its own steps."""
    strategy = build_strategy("local", _problem(TwoStarts(), metric="score", higher_is_better=True,
                                                options={"warmup_epochs": 1, "trial_fraction": 0.5}), epochs=5)
    train, _ = _batches()
    taken = []
    for epoch in range(5):
        strategy.begin_epoch(epoch)
        batches = strategy.epoch_batches(epoch, [train] * 5)
        taken.append((strategy.describe().get("trial"), len(batches)))
        for batch in batches:
            strategy.step(batch, None)
        strategy.end_epoch(epoch, {"score": float(epoch)})
    assert taken == [("start 0", 5), ("start 1", 5), ("stay", 3), ("row 0 candidate 0", 3), ("row 0 candidate 1", 3)]
    with pytest.raises(NaspError, match=r"--trial-fraction 0: must be a number in \(0, 1\]"):
        build_strategy("local", _problem(TinyNet(), options={"trial_fraction": 0}), epochs=3)


def test_a_score_that_is_not_a_number_never_wins_and_is_beaten_by_any_number():
    """An evaluation that blew up (NaN) must not become a strategy's best, nor keep a later
    finite score from replacing it (random search kept such a cell before)."""
    from nasp.strategies.base import SearchProblem

    for higher in (False, True):
        problem = SearchProblem(network=None, loss=None, weight_optimizer=None, higher_is_better=higher)
        nan = float("nan")
        assert not problem.better(nan, None) and not problem.better(nan, 1.0) and not problem.better(nan, nan)
        assert problem.better(1.0, nan) and problem.better(1.0, None)
        assert problem.better(2.0, 1.0) is higher and problem.better(1.0, 2.0) is not higher
