"""What each task trains on and scores by: 1-N batches, the binary cross-entropy and the filtered
ranking metrics of knowledge-graph completion (ranking); row batches, the squared error and
RMSE/MAE (rating)."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from nasp.errors import NaspError

from .data import TripleSplits
from .models import TripleModel, predict


HITS = (1, 3, 10)


#: a dense 1-N target matrix (queries x entities) larger than this is refused
MAX_TARGETS = 200_000_000


def known_answers(triples: Tensor, d: int) -> dict[tuple[int, int], list[int]]:
    """Query -> the entities that answer it in ``triples``: (head, relation) -> tails (d = 0),
    (relation, tail) -> heads (d = 1)."""
    out: dict[tuple[int, int], list[int]] = {}
    for h, r, t in triples.tolist():
        key, answer = ((h, r), t) if d == 0 else ((r, t), h)
        out.setdefault(key, []).append(answer)
    return out


def one_to_n(queries: Tensor, d: int, answers: dict, num_entities: int) -> tuple[Tensor, Tensor]:
    """Distinct queries of ``queries`` (triples) and their 0/1 target rows over every entity."""
    keys = sorted({(h, r) if d == 0 else (r, t) for h, r, t in queries.tolist()})
    if len(keys) * num_entities > MAX_TARGETS:
        raise NaspError(f"{len(keys)} queries x {num_entities} entities: too large for 1-N training in this version")
    q = torch.tensor(keys, dtype=torch.long).reshape(-1, 2)
    targets = torch.zeros(len(keys), num_entities)
    for i, key in enumerate(keys):
        targets[i, answers[key]] = 1.0
    return q, targets


def query_batches(triples: Tensor, known: Tensor, num_entities: int, batch_size: int,
                  seed: int) -> Callable[[int], list]:
    """``batches(epoch)``: shuffled 1-N batches ``(q, d, targets)`` of both directions; a query's
    targets are its answers among ``known`` (training triples, plus validation ones for the
    architecture step's batches)."""
    sets = [one_to_n(triples, d, known_answers(known, d), num_entities) for d in (0, 1)]

    def batches(epoch: int) -> list:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        out = []
        for d, (q, targets) in enumerate(sets):
            order = torch.randperm(len(q), generator=g)
            out += [(q[i], d, targets[i]) for i in order.split(batch_size)]
        return [out[i] for i in torch.randperm(len(out), generator=g).tolist()]

    return batches


def loss_fn(model: TripleModel, batch: tuple) -> Tensor:
    """Binary cross-entropy of the 1-N scores against the 0/1 targets."""
    q, d, targets = batch
    device = next(model.parameters()).device
    return nn.functional.binary_cross_entropy_with_logits(model.score_all(q.to(device), d), targets.to(device))


def ranking_filter(triples: Tensor, every_known: Tensor) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """What filtered ranking of ``triples`` removes, per direction (tails given (head, relation),
    then heads given (relation, tail)): (rows, entities), each triple's row in ``triples`` (in
    order) with every other answer its query has in ``every_known`` (the triple's own left out).
    Computed once per set of triples and reused at every evaluation."""
    out = []
    for d in (0, 1):
        answers = known_answers(every_known, d)
        rows: list[int] = []
        entities: list[int] = []
        for i, (h, r, t) in enumerate(triples.tolist()):
            key, target = ((h, r), t) if d == 0 else ((r, t), h)
            others = [e for e in answers.get(key, ()) if e != target]
            rows += [i] * len(others)
            entities += others
        out.append((torch.tensor(rows, dtype=torch.long), torch.tensor(entities, dtype=torch.long)))
    return out[0], out[1]


def filtered_ranks(model: TripleModel, triples: Tensor, every_known: Tensor, batch_size: int = 512,
                   removed: Optional[tuple] = None) -> Tensor:
    """The filtered rank of each triple's tail (given head, relation) then of its head (given
    relation, tail): 1 + entities scored higher + half the others scored equal, after removing
    every other answer the query has in ``every_known`` (``removed``: ``ranking_filter``'s of
    them, when computed before)."""
    removed = removed if removed is not None else ranking_filter(triples, every_known)
    ranks = []
    device = next(model.parameters(), torch.zeros(0)).device
    with torch.no_grad():
        for d in (0, 1):
            rows_removed, entities_removed = removed[d]
            for start in range(0, len(triples), batch_size):
                rows = triples[start:start + batch_size]
                q = rows[:, :2] if d == 0 else rows[:, 1:]
                target = rows[:, 2] if d == 0 else rows[:, 0]
                scores = model.score_all(q.to(device), d).float().cpu()
                lo, hi = torch.searchsorted(rows_removed, torch.tensor([start, start + len(rows)])).tolist()
                mask = torch.zeros_like(scores, dtype=torch.bool)
                mask[rows_removed[lo:hi] - start, entities_removed[lo:hi]] = True
                true = scores.gather(1, target.unsqueeze(1))
                higher = ((scores > true) & ~mask).sum(1).float()
                equal = ((scores == true) & ~mask).sum(1).float() - 1
                ranks.append(1 + higher + equal / 2)
    return torch.cat(ranks) if ranks else torch.zeros(0)


def metrics(ranks: Tensor, part: str) -> dict[str, float]:
    """MRR and Hits@1/3/10 of ranks (both directions together), keys prefixed ``part_``."""
    if not len(ranks):
        return {}
    out = {f"{part}_mrr": float((1.0 / ranks).mean())}
    out.update({f"{part}_hits@{k}": float((ranks <= k).float().mean()) for k in HITS})
    return out


def evaluate(model: TripleModel, splits: TripleSplits, part: str) -> dict[str, float]:
    """The metrics of ``part`` (valid or test): filtered MRR and Hits@1/3/10 (ranking), RMSE and
    MAE (rating); {} for an empty part."""
    model.eval()
    try:
        if splits.task == "rating":
            return rating_metrics(model, splits, part)
        if part not in splits.removed:
            splits.removed[part] = ranking_filter(getattr(splits, part), splits.all_triples())
        return metrics(filtered_ranks(model, getattr(splits, part), splits.all_triples(), removed=splits.removed[part]), part)
    finally:
        model.train()


def row_batches(rows: Tensor, values: Tensor, batch_size: int, seed: int) -> Callable[[int], list]:
    """``batches(epoch)``: the rows and their values in shuffled batches (fixed by seed and epoch)."""
    def batches(epoch: int) -> list:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(len(rows), generator=g)
        return [(rows[i], values[i]) for i in order.split(batch_size)]

    return batches


def make_rating_loss(reg: float) -> Callable[[TripleModel, tuple], Tensor]:
    """Squared error of the predicted values, plus ``reg`` times the squared norms of each row's
    three embeddings and biases (the two-way rating models' per-row L2), averaged over the batch."""
    def rating_loss(model: TripleModel, batch: tuple) -> Tensor:
        rows, values = batch
        device = next(model.parameters()).device
        rows, values = rows.to(device), values.to(device)
        loss = nn.functional.mse_loss(predict(model, rows), values)
        if reg:
            norms = sum(t(rows[:, k]).pow(2).sum(-1) for k, t in enumerate(model.tables()))
            loss = loss + reg * (norms + model.rating.rows_penalty(rows)).mean()
        return loss

    return rating_loss


def rating_metrics(model: TripleModel, splits: TripleSplits, part: str, batch_size: int = 8192) -> dict[str, float]:
    """RMSE and MAE of ``part``'s values, predictions clipped to the training values' range. A
    row with an id never seen in training is predicted without the interaction term (the mean
    and the biases of its known ids), and counted (``part_unseen_rows``)."""
    rows, values = getattr(splits, part), splits.values[part]
    if not len(rows):
        return {}
    train_values = splits.values["train"]
    low, high = float(train_values.min()), float(train_values.max())
    seen = splits.train.max(0).values + 1  # ids are numbered training rows first
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for batch in rows.split(batch_size):
            batch = batch.to(device)
            known = (batch < seen.to(device)).all(1)
            score = torch.where(known, model.score_rows(batch), torch.zeros((), device=device))
            out.append((score + model.rating(batch)).clamp(low, high).double().cpu())
    error = torch.cat(out) - values.double()
    metrics_ = {f"{part}_rmse": float(error.pow(2).mean().sqrt()), f"{part}_mae": float(error.abs().mean())}
    unseen = int((~(rows < seen).all(1)).sum())
    if unseen:
        metrics_[f"{part}_unseen_rows"] = unseen
    return metrics_
