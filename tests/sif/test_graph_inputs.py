"""The graph-propagated and item-item input encodings of the autocf-graph space (``sif.graph``):
their terms against dense computations, the delayed gradient against autograd, the start as the
id encoding, the pending gradient's checkpoint, and a model of the space trained, saved, loaded
and recommending through the API and the CLI."""
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from click.testing import CliRunner

from nasp.cli import main
from sif import SIF
from sif.graph import CANDIDATE_TERMS, GraphInputs, item_item_operator
from nasp.mixing import SinglePath
from sif.joint import FUNCTION_PRESERVING, JointConfig, JointNetwork, fixed_state
from sif.model import DATA_BUFFERS, PendingHistory
from sif.space import GRAPH_INPUTS, SPACES

#: 4 users, 5 items: a pair given twice, user 3 and item 4 without edges
USERS = torch.tensor([0, 0, 1, 2, 2, 2, 0, 1])
ITEMS = torch.tensor([0, 1, 1, 0, 2, 3, 1, 3])
NU, NI = 4, 5


def _dense_blocks() -> tuple[torch.Tensor, torch.Tensor]:
    """(A_ui, A_iu) of D^-1/2 A D^-1/2, computed densely."""
    x = torch.zeros(NU, NI)
    x[USERS, ITEMS] = 1.0
    du, di = x.sum(1), x.sum(0)
    su = torch.where(du > 0, du.pow(-0.5), torch.zeros_like(du))
    si = torch.where(di > 0, di.pow(-0.5), torch.zeros_like(di))
    ui = su[:, None] * x * si[None, :]
    return ui, ui.T


def _dense_item_item(neighbours: int = 2, shrink: float = 0.5) -> torch.Tensor:
    """rows of X S scaled to sum 1, S cosine similarities (shrunk) keeping each item's top ``neighbours``."""
    x = torch.zeros(NU, NI)
    x[USERS, ITEMS] = 1.0
    co = x.T @ x
    n = co.diagonal().sqrt()
    s = co / (n[:, None] * n[None, :] + shrink)
    s.fill_diagonal_(0.0)
    keep = torch.zeros_like(s, dtype=torch.bool).scatter_(0, torch.topk(s, neighbours, dim=0).indices, True)
    s = torch.where(keep, s, torch.zeros_like(s))
    m = x @ s
    sums = m.sum(1, keepdim=True)
    return torch.where(sums > 0, m / sums.clamp_min(1e-12), torch.zeros_like(m))


def _module(refreshes=None) -> GraphInputs:
    module = GraphInputs(NU, NI, {"user": GRAPH_INPUTS["user"], "item": GRAPH_INPUTS["item"]}, refreshes)
    module.set_edges(USERS, ITEMS)
    return module


def test_the_space_adds_the_encodings_to_autocf_and_each_starts_as_the_id_encoding():
    assert SPACES["autocf-graph"]["user_input"] == ("id", "history", "both", "graph1", "graph2", "itemitem")
    assert SPACES["autocf-graph"]["item_input"] == ("id", "history", "both", "graph1", "graph2")
    assert {k: v for k, v in SPACES["autocf-graph"].items() if "input" not in k} == \
           {k: v for k, v in SPACES["autocf"].items() if "input" not in k}
    for side, names in GRAPH_INPUTS.items():
        for name in names:
            assert FUNCTION_PRESERVING[f"{side}_input", name] == "id"


def test_the_item_item_operator_equals_a_dense_computation():
    x = sp.csr_matrix((np.ones(len(USERS), np.float32), (USERS.numpy(), ITEMS.numpy())), shape=(NU, NI))
    x.data[:] = 1.0
    m = torch.from_numpy(item_item_operator(x, neighbours=2, shrink=0.5).toarray())
    assert torch.allclose(m, _dense_item_item(), atol=1e-6)
    assert torch.allclose(m.sum(1)[:3], torch.ones(3)) and m[3].abs().sum() == 0  # user 3 has no history


def test_every_term_equals_the_dense_propagation_in_evaluation():
    torch.manual_seed(0)
    module = _module().eval()
    eu, ei = torch.randn(NU, 3), torch.randn(NI, 3)
    ui, iu = _dense_blocks()
    with torch.no_grad():
        for gate in module.gates.values():
            gate.copy_(torch.arange(1, gate.numel() + 1, dtype=torch.float32))
        users, items = torch.arange(NU), torch.arange(NI)
        assert torch.allclose(module("user", "graph1", users, eu, ei), ui @ ei, atol=1e-6)
        assert torch.allclose(module("user", "graph2", users, eu, ei), ui @ ei + 2 * ui @ (iu @ eu), atol=1e-6)
        assert torch.allclose(module("item", "graph1", items, eu, ei), iu @ eu, atol=1e-6)
        assert torch.allclose(module("item", "graph2", items, eu, ei), iu @ eu + 2 * iu @ (ui @ ei), atol=1e-6)
        got = module("user", "itemitem", users, eu, ei)
    m = torch.from_numpy(item_item_operator(sp.csr_matrix(((ui > 0).float()).numpy())).toarray())
    assert torch.allclose(got, m @ ei, atol=1e-6)
    # evaluation follows the tables as they change
    with torch.no_grad():
        ei.add_(1.0)
        assert torch.allclose(module("user", "graph1", users, eu, ei), ui @ ei, atol=1e-6)


@pytest.mark.parametrize("side,name", sorted(CANDIDATE_TERMS))
def test_the_gradient_reaching_tables_and_gates_equals_autograd_through_the_dense_terms(side, name):
    torch.manual_seed(1)
    module = _module(refreshes=None).train()  # a refresh at every step: the exact gradient at once
    with torch.no_grad():
        module.gates[f"{side}_{name}"].copy_(torch.tensor([0.7, -0.4][: len(CANDIDATE_TERMS[side, name])]))
    eu = torch.randn(NU, 3, requires_grad=True)
    ei = torch.randn(NI, 3, requires_grad=True)
    ids = torch.tensor([0, 2, 2, 1]) if side == "user" else torch.tensor([1, 3, 0, 0])
    weights = torch.randn(4, 3)
    (module(side, name, ids, eu, ei) * weights).sum().backward()
    got = (eu.grad.clone(), ei.grad.clone(), module.gates[f"{side}_{name}"].grad.clone())

    ui, iu = _dense_blocks()
    x = torch.zeros(NU, NI)
    x[USERS, ITEMS] = 1.0
    m = torch.from_numpy(item_item_operator(sp.csr_matrix(x.numpy())).toarray())
    eu2, ei2 = eu.detach().clone().requires_grad_(), ei.detach().clone().requires_grad_()
    gates = module.gates[f"{side}_{name}"].detach().clone().requires_grad_()
    terms = {"u1": lambda: ui @ ei2, "u2": lambda: ui @ (iu @ eu2), "i1": lambda: iu @ eu2, "i2": lambda: iu @ (ui @ ei2),
             "uii": lambda: m @ ei2}
    out = sum(g * terms[t]()[ids] for g, t in zip(gates, CANDIDATE_TERMS[side, name]))
    (out * weights).sum().backward()
    for grad, table in zip(got[:2], (eu2, ei2)):
        assert torch.allclose(grad, table.grad if table.grad is not None else torch.zeros_like(table), atol=1e-6)
    assert torch.allclose(got[2], gates.grad, atol=1e-6)


def test_between_refreshes_the_gradient_waits_and_then_arrives_whole():
    torch.manual_seed(2)
    module = _module(refreshes=1).train()  # one refresh per len(edges) looked-up rows
    with torch.no_grad():
        module.gates["user_graph1"].fill_(0.5)
    eu = torch.randn(NU, 3, requires_grad=True)
    ei = torch.randn(NI, 3, requires_grad=True)
    ui, _ = _dense_blocks()
    ids = torch.tensor([0, 1, 2])
    total = torch.zeros(NI, 3)
    arrived = []
    for step in range(3):  # 3 + 3 rows: no refresh; 9 >= 8 edges: the refresh
        weights = torch.randn(3, 3)
        total += 0.5 * ui[ids].T @ weights
        (module("user", "graph1", ids, eu, ei) * weights).sum().backward()
        arrived.append(ei.grad is not None and bool(ei.grad.abs().sum() > 0))
    assert arrived == [False, False, True]
    assert torch.allclose(ei.grad, total, atol=1e-6)
    assert module.stale and module.pending_lookups == 0


def test_the_pending_gradient_is_checkpointed_with_the_histories():
    config = JointConfig(NU, NI, dim=3, user_inputs=("graph2",), item_inputs=("graph1",), history_refreshes=1)
    net = JointNetwork(config)
    net.set_history(USERS, ITEMS)
    assert net.graph is not None and not net.user_emb.sparse
    net.train()
    with torch.no_grad():
        net.graph.gates["user_graph2"].fill_(0.3)
    net(torch.tensor([0, 1]), torch.tensor([1, 2])).sum().backward()
    hook = next(h for h in net.run_hooks() if isinstance(h, PendingHistory))
    state = hook.state_dict()
    assert state["graph"]["lookups"] == 4 and set(state["graph"]["terms"]) == {"u1", "u2", "i1"}
    fresh = JointNetwork(config)
    fresh.set_history(USERS, ITEMS)
    PendingHistory(fresh).load_state_dict(state)
    assert fresh.graph.pending_lookups == 4
    assert torch.equal(fresh.graph.pending["u2"], net.graph.pending["u2"])


@pytest.mark.parametrize("user,item", [("graph1", "id"), ("graph2", "graph2"), ("itemitem", "graph1")])
def test_each_encoding_starts_as_the_id_model_and_has_its_shape(user, item):
    torch.manual_seed(3)
    graph = JointNetwork(JointConfig(NU, NI, dim=3, user_inputs=(user,), item_inputs=(item,)))
    graph.set_history(USERS, ITEMS)
    plain = JointNetwork(JointConfig(NU, NI, dim=3, user_inputs=("id",), item_inputs=("id",)))
    plain.load_state_dict({k: v for k, v in graph.state_dict().items() if not k.startswith("graph.")}, strict=False)
    users, items = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 1, 0, 2])
    for net in (graph, plain):
        net.eval()
    with torch.no_grad():
        assert torch.allclose(graph(users, items), plain(users, items))
        assert graph.score_all(users).shape == (4, NI)


def test_a_model_of_the_space_trains_saves_loads_and_recommends(tmp_path):
    rng = np.random.default_rng(0)
    rows = {(int(u), int(i)) for u, i in zip(rng.integers(1, 41, 900), rng.integers(1, 61, 900))}
    data = tmp_path / "u.data"
    data.write_text("".join(f"{u}\t{i}\t1\t{880000000 + k}\n" for k, (u, i) in enumerate(sorted(rows))))
    model = SIF(task="ranking", choices="user_input=graph2+item_input=graph1", epochs=2, max_epochs=2, dim=8,
                seed=0, verbose=False).fit(data)
    assert model.summary_["choices"]["user_input"] == "graph2"
    model.save(tmp_path / "model")
    loaded = SIF.load(tmp_path / "model")
    recs = loaded.recommend(["1", "2"], k=5)
    assert recs.equals(model.recommend(["1", "2"], k=5))
    seen = {(str(u), str(i)) for u, i in rows}
    assert not any((str(r.user), str(r.item)) in seen for r in recs.itertuples())


def test_the_cli_searches_the_space_and_refuses_a_candidate_of_the_wrong_side(tmp_path):
    rng = np.random.default_rng(1)
    rows = {(int(u), int(i)) for u, i in zip(rng.integers(1, 31, 600), rng.integers(1, 41, 600))}
    data = tmp_path / "u.data"
    data.write_text("".join(f"{u}\t{i}\t1\t{880000000 + k}\n" for k, (u, i) in enumerate(sorted(rows))))
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(main, ["sif", "search", "--data", str(data), "--task", "ranking", "--space", "autocf-graph", "--strategy",
                                  "local", "--epochs", "2", "--max-epochs", "2", "--dim", "8", "--baselines", "none",
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    arch = json.loads((out / "arch.json").read_text())
    assert arch["model"]["space"] == "autocf-graph" and set(arch["choices"]) == set(SPACES["autocf"])
    bad = runner.invoke(main, ["sif", "train", "--data", str(data), "--task", "ranking", "--choices", "item_input=itemitem",
                               "--out", str(tmp_path / "bad")])
    assert bad.exit_code != 0 and "unknown item input 'itemitem'" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "bad" / "summary.json").exists()


def test_the_search_state_maps_onto_the_fixed_network_of_its_choices():
    space = JointConfig.search_space(JointConfig(NU, NI, dim=3), "residual", "autocf-graph")
    torch.manual_seed(4)
    searched = JointNetwork(space)
    searched.set_history(USERS, ITEMS)
    with torch.no_grad():
        for p in searched.parameters():
            p.normal_()
    choices = {"user_input": "graph2", "item_input": "history", "user_function": "mlp", "item_function": "tanh",
               "op": "weighted", "head": "free"}
    fixed = space.fixed(choices)
    net = JointNetwork(fixed)
    net.set_history(USERS, ITEMS)
    state = fixed_state(searched.state_dict(), space, fixed)
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("alphas.") or k in DATA_BUFFERS for k in missing)
    # the fixed network computes what the search network does on its one-hot architecture
    searched.set_architecture([torch.tensor([[float(n == choices[row]) for n in names]])
                               for row, names in space.rows().items()])
    users, items = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 1, 0, 2])
    searched.eval(), net.eval()
    with torch.no_grad(), searched.using(SinglePath()):
        assert torch.allclose(net(users, items), searched(users, items), atol=1e-5)


def test_the_local_search_retrains_warm_by_default_and_fresh_on_request(tmp_path):
    rng = np.random.default_rng(2)
    rows = {(int(u), int(i)) for u, i in zip(rng.integers(1, 31, 600), rng.integers(1, 41, 600))}
    data = tmp_path / "u.data"
    data.write_text("".join(f"{u}\t{i}\t1\t{880000000 + k}\n" for k, (u, i) in enumerate(sorted(rows))))
    common = dict(task="ranking", space="autocf-graph", epochs=2, max_epochs=1, dim=8, baselines="none", seed=0, verbose=False)
    warm = SIF(strategy="local", **common).fit(data).summary_
    fresh = SIF(strategy="local", warm_start=False, **common).fit(data).summary_
    assert warm["choices"] == fresh["choices"]
    # one retraining epoch from the incumbent's weights validates as the incumbent trained one more epoch, not as a fresh start
    assert warm["valid_ndcg@10"] > fresh["valid_ndcg@10"]
