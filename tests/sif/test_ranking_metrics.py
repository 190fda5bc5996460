"""Top-K metrics (RecBole's definitions) computed by hand, and the full-ranking evaluation:
exclusions, held-out pairs, chunking, ties, short candidate lists, the SIF network's scores."""
import math

import pytest
import torch

from nasp.mixing import Mixing
from sif.model import ModelConfig, SIFNetwork
from sif.ranking import RANKING_METRICS, full_ranking, per_user_metrics, ranking_metrics

LOG2 = math.log2


def _hits(*rows: str) -> torch.Tensor:
    """'x.x..' -> [True, False, True, False, False] per user."""
    return torch.tensor([[c == "x" for c in row] for row in rows])


# users A..E: the top 5 of each (x = a held-out item at that rank) and their held-out counts
HITS = _hits("x.x..", ".x...", ".....", ".....", "...xx")
HELDOUT = torch.tensor([4, 1, 2, 0, 2])  # D has no held-out item: left out of every average


def test_metrics_at_5_by_hand():
    per_user = per_user_metrics(HITS, HELDOUT, [5])
    idcg_a = 1 + 1 / LOG2(3) + 1 / 2 + 1 / LOG2(5)  # min(5, 4) = 4 ideal hits
    expected = {  # A, B, C, E
        "recall@5": [2 / 4, 1 / 1, 0, 2 / 2],
        "precision@5": [2 / 5, 1 / 5, 0, 2 / 5],
        "hit@5": [1, 1, 0, 1],
        "mrr@5": [1, 1 / 2, 0, 1 / 4],
        "ndcg@5": [(1 + 1 / 2) / idcg_a, (1 / LOG2(3)) / 1, 0, (1 / LOG2(5) + 1 / LOG2(6)) / (1 + 1 / LOG2(3))],
    }
    assert set(per_user) == set(expected)
    keep = torch.tensor([0, 1, 2, 4])
    for key, values in expected.items():
        assert per_user[key][keep].tolist() == pytest.approx(values), key
        assert math.isnan(per_user[key][3])  # D
    averaged = ranking_metrics(HITS, HELDOUT, [5])
    for key, values in expected.items():
        assert averaged[key] == pytest.approx(sum(values) / 4), key
    assert averaged["ndcg@5"] == pytest.approx(((1.5 / idcg_a) + 1 / LOG2(3) + 0 + (1 / LOG2(5) + 1 / LOG2(6)) / (1 + 1 / LOG2(3))) / 4)


def test_metrics_at_3_use_the_first_three_ranks_and_a_shorter_ideal():
    got = ranking_metrics(HITS, HELDOUT, [3, 5])
    assert [k for k in got if k.endswith("@3")] == [f"{name}@3" for name in RANKING_METRICS]
    idcg3 = 1 + 1 / LOG2(3) + 1 / 2  # A: min(3, 4) = 3 ideal hits
    assert got["recall@3"] == pytest.approx((2 / 4 + 1 + 0 + 0) / 4)  # E's hits are at ranks 4 and 5
    assert got["precision@3"] == pytest.approx((2 / 3 + 1 / 3 + 0 + 0) / 4)
    assert got["hit@3"] == pytest.approx(2 / 4)
    assert got["mrr@3"] == pytest.approx((1 + 1 / 2) / 4)
    assert got["ndcg@3"] == pytest.approx((1.5 / idcg3 + 1 / LOG2(3)) / 4)


def test_ndcg_is_one_for_a_perfect_list_and_the_ideal_is_capped_at_k():
    hits, heldout = _hits("xxx", "xx."), torch.tensor([10, 2])
    per_user = per_user_metrics(hits, heldout, [3])
    assert per_user["ndcg@3"].tolist() == pytest.approx([1.0, 1.0])
    assert per_user["recall@3"].tolist() == pytest.approx([0.3, 1.0])


def test_k_outside_the_lists_and_no_users_with_held_out_items():
    with pytest.raises(ValueError, match="outside"):
        ranking_metrics(HITS, HELDOUT, [6])
    with pytest.raises(ValueError, match="outside"):
        ranking_metrics(HITS, HELDOUT, [0])
    got = ranking_metrics(HITS, torch.zeros(5, dtype=torch.long), [5])
    assert all(math.isnan(v) for v in got.values())


def _pairs(*pairs):
    return torch.tensor([u for u, _ in pairs]), torch.tensor([i for _, i in pairs])


def test_full_ranking_on_known_scores():
    # 3 users x 6 items; higher score = better rank
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
                           [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                           [0.5, 0.9, 0.1, 0.8, 0.3, 0.7]])
    exclude = _pairs((0, 0), (0, 2), (1, 5), (2, 1))
    heldout = _pairs((0, 1), (0, 4), (0, 5), (1, 0), (2, 3), (2, 3))  # (2, 3) twice: counted once
    result = full_ranking(lambda u: scores[u], None, exclude, heldout, 6, [3], chunk=2)
    assert result.topk.tolist() == [[1, 3, 4], [4, 3, 2], [3, 5, 0]]
    assert result.hits.tolist() == [[True, False, True], [False, False, False], [True, False, False]]
    assert result.num_heldout.tolist() == [3, 1, 1]
    assert result.num_users == 3 and result.users.tolist() == [0, 1, 2]
    assert result.metrics["recall@3"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert result.metrics["precision@3"] == pytest.approx((2 / 3 + 0 + 1 / 3) / 3)
    assert result.metrics["mrr@3"] == pytest.approx((1 + 0 + 1) / 3)
    assert result.metrics["ndcg@3"] == pytest.approx(((1 + 1 / 2) / (1 + 1 / LOG2(3) + 1 / 2) + 0 + 1) / 3)
    assert result.metrics == pytest.approx(ranking_metrics(result.hits, result.num_heldout, [3]))


def _random_case(seed: int, users: int = 37, items: int = 23):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(users, items, generator=g)
    scores[:, 5] = scores[:, 6]  # some ties
    status = torch.randint(0, 10, (users, items), generator=g)  # 0-5 candidate, 6-7 excluded, 8-9 held out
    exclude = torch.nonzero((status >= 6) & (status <= 7), as_tuple=True)
    heldout = torch.nonzero(status >= 8, as_tuple=True)
    return scores, status, exclude, heldout


def _reference(scores, status, ks):
    """A per-user Python loop over the definitions (ties aside: the random scores have none
    that matter to the top K except the copied column, handled by comparing sets of scores)."""
    out = {f"{name}@{k}": [] for k in ks for name in RANKING_METRICS}
    for u in range(scores.shape[0]):
        held = set(torch.nonzero(status[u] >= 8).flatten().tolist())
        if not held:
            continue
        s = scores[u].clone()
        s[(status[u] >= 6) & (status[u] <= 7)] = -math.inf
        order = torch.argsort(s, descending=True, stable=True).tolist()
        for k in ks:
            top = order[:k]
            hit = [i in held and bool(s[i] > -math.inf) for i in top]
            first = next((r for r, h in enumerate(hit, 1) if h), None)
            dcg = sum(1 / LOG2(r + 1) for r, h in enumerate(hit, 1) if h)
            idcg = sum(1 / LOG2(r + 1) for r in range(1, min(k, len(held)) + 1))
            out[f"recall@{k}"].append(sum(hit) / len(held))
            out[f"precision@{k}"].append(sum(hit) / k)
            out[f"hit@{k}"].append(float(any(hit)))
            out[f"mrr@{k}"].append(1 / first if first else 0.0)
            out[f"ndcg@{k}"].append(dcg / idcg)
    return {key: sum(v) / len(v) for key, v in out.items()}


@pytest.mark.parametrize("chunk", [1, 5, 1000])
def test_full_ranking_matches_a_per_user_loop_and_never_ranks_an_excluded_item(chunk):
    scores, status, exclude, heldout = _random_case(0)
    scores[:, 5] += 1e-3  # break the copied column's ties for the loop's comparison
    result = full_ranking(lambda u: scores[u], torch.arange(37), exclude, heldout, 23, [1, 5, 10], chunk=chunk)
    assert result.metrics == pytest.approx(_reference(scores, status, [1, 5, 10]))
    excluded = (status >= 6) & (status <= 7)
    assert not excluded.gather(1, result.topk).any()
    users_without = int(((status >= 8).sum(1) == 0).sum())
    assert result.num_users == 37 - users_without


def test_ties_give_a_valid_top_k():
    scores, status, exclude, heldout = _random_case(1)
    scores = scores.round()  # many ties
    result = full_ranking(lambda u: scores[u], torch.arange(37), exclude, heldout, 23, [4], chunk=8)
    excluded = (status >= 6) & (status <= 7)
    for u in range(37):
        top = result.topk[u]
        assert top.unique().numel() == 4 and not excluded[u, top].any()
        rest = torch.ones(23, dtype=torch.bool)
        rest[top] = False
        rest &= ~excluded[u]
        assert scores[u, top].min() >= scores[u, rest].max()  # whichever tied items topk keeps, it is a top 4
        assert result.hits[u].tolist() == (status[u, top] >= 8).tolist()


def test_all_tied_candidates_within_k_give_order_free_metrics():
    scores = torch.zeros(1, 5)
    result = full_ranking(lambda u: scores[u], None, _pairs((0, 0)), _pairs((0, 3)), 5, [4])
    assert result.metrics["recall@4"] == 1.0 and result.metrics["hit@4"] == 1.0
    assert 0 not in result.topk[0].tolist()


def test_a_user_with_fewer_candidates_than_k_gets_no_hit_from_excluded_items():
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    exclude = _pairs((0, 0), (0, 1), (0, 2))
    heldout = _pairs((0, 3), (0, 1))  # (0, 1) is also excluded: counted, never a hit
    result = full_ranking(lambda u: scores[u], None, exclude, heldout, 4, [3])
    assert result.topk[0, 0] == 3 and result.hits.tolist() == [[True, False, False]]
    assert result.metrics["recall@3"] == pytest.approx(1 / 2)
    assert result.metrics["precision@3"] == pytest.approx(1 / 3)


def test_k_above_the_item_count_is_refused_and_users_must_be_distinct():
    scores = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="only 4 items"):
        full_ranking(lambda u: scores[u], None, _pairs((0, 0)), _pairs((1, 1)), 4, [5])
    with pytest.raises(ValueError, match="distinct"):
        full_ranking(lambda u: scores[u], torch.tensor([1, 1]), _pairs((0, 0)), _pairs((1, 1)), 4, [2])


def test_users_without_held_out_items_are_ranked_but_not_averaged():
    scores = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])
    result = full_ranking(lambda u: scores[u], torch.tensor([1, 0]), _pairs((0, 0)), _pairs((1, 2)), 3, [1, 2])
    assert result.users.tolist() == [1, 0] and result.num_users == 1
    assert result.topk.tolist() == [[1, 2], [2, 1]]
    assert result.per_user["hit@2"][0] == 1.0 and math.isnan(result.per_user["hit@2"][1])
    assert result.metrics["mrr@2"] == pytest.approx(1 / 2) and result.metrics["hit@1"] == 0.0


def test_full_ranking_of_the_sif_supernet_equals_ranking_its_forward_scores():
    torch.manual_seed(0)
    net = SIFNetwork(ModelConfig(30, 23, dim=4, implicit=True))
    _, status, exclude, heldout = _random_case(2, users=30)
    net.set_history(*exclude)
    with torch.no_grad():
        for w in (net.user_emb.weight, net.item_emb.weight, net.user_history.factors.weight, net.alpha):
            w.normal_()
    users = torch.arange(30)
    with net.using(Mixing.SOFTMAX), torch.no_grad():
        dense = net(users.repeat_interleave(23), torch.arange(23).repeat(30)).reshape(30, 23)
        got = full_ranking(net.score_all, None, exclude, heldout, 23, [5, 10], chunk=7)
    want = full_ranking(lambda u: dense[u], None, exclude, heldout, 23, [5, 10])
    assert got.metrics == pytest.approx(want.metrics)
    assert torch.equal(got.hits, want.hits)
