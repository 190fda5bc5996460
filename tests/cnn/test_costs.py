"""Costs per op and position (``nasp.cnn.costs``): the tables add up to the built networks' own
counts, and latency tables round-trip and refuse what does not fit."""
from __future__ import annotations

import json

import pytest
import torch

from nasp import NaspError, prox
from nasp.cnn.costs import (CostNetwork, LatencyTable, NetworkCosts, cell_budget, profile_ops, read_latency_table,
                            write_latency_table)
from nasp.cnn.genotypes import Genotype
from nasp.cnn.model import MODELS, count_flops, count_params
from nasp.cnn.search_net import CNNSearchNetwork
from nasp.cnn.spaces import SPACES
from nasp.mixing import SinglePath
from nasp.network import SearchNetwork

SMALL = CostNetwork("eval", "cifar", 4, 6, 1, 10, (8, 8))


def random_genotypes(space: str, n: int, seed: int = 0) -> list[Genotype]:
    net = CNNSearchNetwork(space, channels=2, layers=1, num_classes=10, in_channels=1)
    g = torch.Generator().manual_seed(seed)
    return [Genotype.from_json(net.export(net.projection().sample([a.shape for a in net.arch_parameters()], g)))
            for _ in range(n)]


@pytest.mark.parametrize("space, network", [
    ("darts", SMALL),
    ("nasp12", CostNetwork("eval", "cifar", 5, 5, 3, 7, (9, 11))),  # odd width and sizes
    ("darts", CostNetwork("eval", "imagenet", 3, 6, 3, 10, (32, 32))),
])
def test_params_and_madds_of_a_genotype_are_those_of_its_evaluation_network(space, network):
    costs = NetworkCosts(SPACES.get(space), network)
    params, madds = costs.cell_costs("params"), costs.cell_costs("madds")
    for genotype in random_genotypes(space, 3):
        model = MODELS.get(network.model)(genotype, channels=network.channels, layers=network.layers,
                                          num_classes=network.num_classes, in_channels=network.in_channels)
        assert costs.genotype_cost(genotype, params) == count_params(model)
        assert costs.genotype_cost(genotype, madds) == count_flops(model, (network.in_channels, *network.image_size))


def test_search_network_costs_are_its_single_path_network():
    network = CostNetwork("search", "cifar", 3, 4, 1, 10, (8, 8))
    costs = NetworkCosts(SPACES.get("darts"), network)
    params, madds = costs.cell_costs("params"), costs.cell_costs("madds")
    net = CNNSearchNetwork("darts", channels=4, layers=3, num_classes=10, in_channels=1)
    # every candidate of every edge once: the supernet's parameters
    normal, reduce = params.entries
    per_type = {False: float(normal.sum()), True: float(reduce.sum())}
    assert params.base + per_type[False] + per_type[True] == sum(
        p.numel() for name, p in net.named_parameters() if not name.startswith("alpha_"))
    for genotype in random_genotypes("darts", 2):
        net.set_architecture(net.alphas_of(genotype))
        with net.using(SinglePath()):
            assert costs.genotype_cost(genotype, madds) == count_flops(net, (1, 8, 8))


def test_budget_of_a_search_fits_every_metric_and_names_the_cheapest():
    budget = cell_budget(SPACES.get("darts"), SMALL, {"params": 1e12, "madds": None, "latency": None})
    assert set(budget.tables) == {"params", "madds"} and budget.projection is not None
    cheapest = budget.projection.cheapest
    with pytest.raises(NaspError, match=f"--max-params 1K: no cell fits; the cheapest cell .* \\({cheapest:,.0f}\\)"):
        cell_budget(SPACES.get("darts"), SMALL, {"params": 1000.0, "madds": None, "latency": None})
    with pytest.raises(NaspError, match="--max-params and --max-madds: give one budget at a time"):
        cell_budget(SPACES.get("darts"), SMALL, {"params": 1e6, "madds": 1e6, "latency": None})
    with pytest.raises(NaspError, match="--max-latency-ms needs --latency-table"):
        cell_budget(SPACES.get("darts"), SMALL, {"params": None, "madds": None, "latency": 5.0})


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lat") / "ops.json"
    write_latency_table(profile_ops(SPACES.get("darts"), SMALL, torch.device("cpu"), repeats=1, warmup=0), path)
    return path


def test_latency_table_round_trip_and_its_costs(table_file):
    table = read_latency_table(table_file)
    costs = NetworkCosts(SPACES.get("darts"), SMALL)
    assert set(table.ms) == set(costs.needed()) and table.base_ms > 0
    table.check(costs)
    again = LatencyTable.from_json(json.loads(json.dumps(table.to_json())), "copy")
    assert again.ms == table.ms and again.base_ms == table.base_ms and again.meta == table.meta
    latency = costs.cell_costs("latency", table)
    genotype = random_genotypes("darts", 1)[0]
    # a genotype's latency: base + every kept edge's op at every position of its cell type
    want = table.base_ms
    for reduction in (False, True):
        edges, _ = genotype.cell(reduction)
        for op, source in edges:
            want += sum(table.ms[p.shape(op, source)] for p in costs.positions if p.reduction == reduction)
    assert costs.genotype_cost(genotype, latency) == pytest.approx(want)
    budget = cell_budget(SPACES.get("darts"), SMALL, {"params": None, "madds": None, "latency": 1e6}, table_file)
    assert budget.metric == "latency" and "latency_ms" in budget.genotype_costs(genotype)


def _broken(table_file, tmp_path, change) -> str:
    obj = json.loads(table_file.read_text())
    change(obj)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return str(path)


@pytest.mark.parametrize("change, message", [
    (lambda o: o.update(type="other"), "not a latency table"),
    (lambda o: o.update(version=9), "latency table version 9"),
    (lambda o: o.update(base_ms="fast"), "base_ms 'fast'"),
    (lambda o: o["ops"].pop(), "no latency for"),
    (lambda o: o["ops"][0].update(op="conv_9x9"), "op 'conv_9x9' is not in space 'darts'"),
    (lambda o: o["ops"][0].update(height=99), "no position of the cifar evaluation network"),
    (lambda o: o["ops"][0].pop("ms"), r"ops\[0\]: missing ms"),
    (lambda o: o["ops"][0].update(ms=-1), r"ops\[0\]: ms -1"),
    (lambda o: o["ops"][0].update(channels=2.5), r"ops\[0\]: channels 2.5"),
    (lambda o: o["ops"].append(dict(o["ops"][0])), "a second entry"),
    (lambda o: o.update(positions=o["positions"][:-1]), "its cells, channels or images differ"),
])
def test_a_malformed_or_mismatched_table_is_one_error(table_file, tmp_path, change, message):
    path = _broken(table_file, tmp_path, change)
    with pytest.raises(NaspError, match=message) as err:
        cell_budget(SPACES.get("darts"), SMALL, {"params": None, "madds": None, "latency": 5.0}, path)
    assert "\n" not in str(err.value) and path in str(err.value)


def test_a_table_of_another_space_or_network_is_refused(table_file):
    with pytest.raises(NaspError, match="is not in space 'nasp12'"):
        cell_budget(SPACES.get("nasp12"), SMALL, {"params": None, "madds": None, "latency": 5.0}, table_file)
    other = CostNetwork("eval", "cifar", 3, 6, 1, 10, (8, 8))
    with pytest.raises(NaspError, match="its cells, channels or images differ"):
        cell_budget(SPACES.get("darts"), other, {"params": None, "madds": None, "latency": 5.0}, table_file)


def test_not_json_is_one_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{not json")
    with pytest.raises(NaspError, match=str(path)):
        read_latency_table(path)


def test_a_network_with_a_budget_projects_sampled_and_exported_cells_within_it():
    budget = cell_budget(SPACES.get("darts"), SMALL, {"params": 1e12, "madds": None, "latency": None})
    span = budget.projection
    limit = span.cheapest + 0.25 * (span.most_expensive - span.cheapest)
    budget = cell_budget(SPACES.get("darts"), SMALL, {"params": limit, "madds": None, "latency": None})
    net = CNNSearchNetwork("darts", channels=2, layers=1, num_classes=10, in_channels=1)
    assert isinstance(net, SearchNetwork) and isinstance(net.projection(), prox.PerTensor)
    net.set_budget(budget.projection)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        values = net.projection().sample([a.shape for a in net.arch_parameters()], g)
        assert budget.genotype_costs(Genotype.from_json(net.export(values)))["params"] <= limit
    assert budget.genotype_costs(Genotype.from_json(net.export(net.project())))["params"] <= limit


def test_profiling_the_search_network_covers_its_shapes():
    network = CostNetwork("search", "cifar", 3, 4, 1, 10, (8, 8))
    table = profile_ops(SPACES.get("nasp12"), network, torch.device("cpu"), repeats=1, warmup=0)
    costs = NetworkCosts(SPACES.get("nasp12"), network)
    table.check(costs)
    assert table.meta["timing"].startswith("in context") and all(v >= 0 for v in table.ms.values())
