"""``nasp sif``: search, train and recommend with searched interaction functions."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Callable, Optional

import click

from nasp.commands import RequiredUnlessResume, RunCommand, finish_run, start_run
from nasp.errors import NaspError
from nasp.devices import resolve_device
from nasp.options import options_from, output_options, resume_option

from . import pipeline, tensor
from .estimator import SIF
from .options import SIFOptions


@click.group()
def sif() -> None:
    """Collaborative filtering: search the interaction function (SIF).

    After Yao et al., "Efficient Neural Interaction Function Search for Collaborative Filtering", WWW 2020.
    Explicit ratings (--task rating, RMSE) or implicit feedback (--task ranking, top-K metrics).

    \b
    nasp sif search --data ml-100k                 search + retrain, writes a run directory
    nasp sif search --data ml-100k --task ranking  the same for top-K recommendation
    nasp sif train --ifc multiply --data ml-100k   a fixed-IFC baseline (SVD++)
    nasp sif recommend --model RUN --user 196      top-10 unseen items for a user
    nasp sif predict --model RUN --pairs FILE      predictions for (user, item) pairs
    """


def data_arguments(f: Callable) -> Callable:
    """``--data``, ``--valid-data``, ``--test-data``: what ``SIF.fit`` reads (not settings of the job)."""
    f = click.option("--test-data", default=None, help="A separate test file; then no test is split off --data.")(f)
    f = click.option("--valid-data", default=None, help="A separate validation file; then no validation is split off --data.")(f)
    return click.option("--data", cls=RequiredUnlessResume,
                        help="Ratings or interaction file (u.data, ratings.dat, ratings.csv, .inter, .zip) or a known name "
                             "(ml-100k, ml-1m, ...).")(f)


def invocation_options(f: Callable) -> Callable:
    """``--out``, ``--json`` and ``--resume``: what belongs to one invocation, not to the job."""
    return output_options(resume_option(f))


def _estimator(opts: dict) -> SIF:
    """The ``SIF`` of a command's options (its ``SIFOptions``: CLI-only ones are left out),
    validated and with its data read and checked: the pre-run validation of every command
    (``nasp.config``)."""
    est = SIF(**{k: v for k, v in opts.items() if k in SIFOptions.field_names()})
    if est.options.folds is None:
        est.load_data(opts["data"], opts.get("valid_data"), opts.get("test_data"))
        return est
    if opts.get("valid_data") or opts.get("test_data"):
        raise NaspError("--folds makes the test parts and splits validation off the rest: leave out --valid-data and --test-data")
    est.load_folds(opts["data"])
    return est


def _run(command: str, opts: dict) -> None:
    """Every check of options and data, then the run directory, the fit and the summary
    (on --resume the options are the saved ones, so the estimator is built after start_run)."""
    est = None if opts["resume"] else _estimator(opts)
    run, opts, _ = start_run(command, opts)
    est = est or _estimator(opts)
    if opts.get("folds") is not None:
        finish_run(run, est.cross_validate(run=run), opts["as_json"])
        return
    est.fit(run=run)
    finish_run(run, _headline_first(est.summary_), opts["as_json"])


@sif.command(cls=RunCommand)
@data_arguments
@options_from(SIFOptions, "search")
@invocation_options
def search(**opts) -> None:
    """Search the interaction function on --data, then retrain it.

    Writes RUN/config.json, metrics.jsonl, checkpoint.pt, curves.png, alphas.png, arch.json (the chosen IFC, with
    --space autocf the choice of every row, and the searched element-wise MLPs), retrain/,
    baseline-NAME/ (--baselines), refit/ (rating), model.pt
    (the kept model: --keep) and summary.json
    (kept first, e.g. "item_input=both (baseline)"; rating: valid_rmse, test_rmse, test_mae; ranking: valid_ndcg@K, test_ndcg@K, test_recall@K,
    test_mrr@K, test_hit@K, test_precision@K; seconds). Selection uses validation data only.
    """
    _run("sif-search", opts)


HEADLINE = ("kept", "fixed_model", "interaction", "searched_interaction", "searched_margin", "valid_rmse", "valid_ndcg@10", "test_rmse",
            "test_mae", "test_ndcg@10", "test_recall@10",
            "test_mrr@10", "seconds", "search_seconds", "train_seconds")


def _headline_first(summary: dict) -> dict:
    """The keys people look for first (the kept model first: ``kept: item_input=both (baseline)``),
    then the rest in their order."""
    return {**{k: summary[k] for k in HEADLINE if k in summary}, **summary}


@sif.command(cls=RunCommand)
@data_arguments
@options_from(SIFOptions, "train")
@invocation_options
def train(**opts) -> None:
    """Train one interaction function (a searched one or a baseline).

    Trains to convergence (early stopping on validation), then (rating task) refits on
    train+valid for that many epochs (--no-refit keeps the early-stopped model).

    Give one of --arch (a searched IFC, keeping its element-wise MLPs), --ifc (a baseline) or
    --choices (a fixed model of the autocf space).
    """
    if sum(opts[name] is not None for name in ("arch", "ifc", "choices")) != 1:
        raise click.UsageError("give exactly one of --arch FILE, --ifc NAME or --choices ROW=NAME[+ROW=NAME...]")
    _run("sif-train", opts)


@sif.command()
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True, help="A run directory of search or train (or its model.pt).")
@click.option("--user", default=None, help="The user's raw id, as in the ratings file.")
@click.option("--users", "users_from", default=None, metavar="FILE|all",
              help="Many users in one start-up: a file of raw ids (one a line) or 'all'; one CSV row per item "
                   "(with --json one JSON line per user).")
@click.option("-k", "--top", "k", type=click.IntRange(min=1), default=10, show_default=True, help="How many items.")
@click.option("--fallback", type=click.Choice(pipeline.FALLBACKS.names()), default="pop", show_default=True,
              help="For users the model does not know: pop (the most popular items of its training data, scored by their "
                   "interaction count; both tasks) or none (left out; an error when no user given is known). "
                   "They are named in one warning.")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per user, one a line.")
@click.option("--ways", type=int, default=2, show_default=True, help="3: a model of three-way data (give --pair).")
@click.option("--pair", default=None, metavar="HEAD,RELATION",
              help="--ways 3: the top third-column ids of this pair of first- and second-column ids, those known with it left "
                   "out: a knowledge graph's tails of (head, relation) by score, or (--task rating models) the contexts of "
                   "(user, item) by predicted rating.")
def recommend(model_dir: Path, user: Optional[str], users_from: Optional[str], k: int, fallback: str, device: str,
              as_json: bool, ways: int, pair: Optional[str]) -> None:
    """Top-K items a user has not interacted with, by predicted rating (rating task) or score (ranking).

    Never offers an item the user rated anywhere in the data the model was given: the
    training, validation and test ratings alike. Titles come from u.item, movies.dat or
    movies.csv beside the ratings when there is one. Give --user ID, or --users FILE|all.
    """
    if tensor.check_ways(ways) == 3:
        _recommend_pair(model_dir, pair, k, as_json)
        return
    if pair is not None:
        raise NaspError("--pair names a (head, relation) pair of a three-way model: add --ways 3")
    if (user is None) == (users_from is None):
        raise click.UsageError("give exactly one of --user ID or --users FILE|all")
    model = pipeline.Recommender(model_dir, resolve_device(device))
    if user is not None:
        _print_single(user, model.serve([user], k, fallback)[0][1], as_json)
        return
    users = model.user_ids if users_from == "all" else pipeline.read_user_list(Path(users_from))
    served = model.serve(users, k, fallback)  # every id is checked before anything is printed
    with_titles = bool(model.titles)
    if not as_json:
        click.echo("user,rank,item,score" + (",title" if with_titles else ""))
    for u, items in served:
        if as_json:
            click.echo(json.dumps({"user": u, "items": items}))
            continue
        if not items:
            click.echo(f"user {u}: nothing left to recommend (rated every item the model knows)", err=True)
        for row in items:
            fields = [u, str(row["rank"]), row["item"], f"{row['score']:.4f}"] + ([row["title"] or ""] if with_titles else [])
            click.echo(_csv_row(fields))


@sif.command()
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True, help="A run directory of search or train (or its model.pt).")
@click.option("--pairs", "pairs_from", required=True, metavar="FILE",
              help="The (user, item) pairs to predict: a file of raw ids, one pair a line, separated by a tab, a comma or spaces "
                   "(at most 16 MiB).")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda or cuda:N.")
def predict(model_dir: Path, pairs_from: str, device: str) -> None:
    """Predicted rating (rating task) or score (ranking) of each (user, item) pair.

    Prints CSV: user,item,prediction,known. known is false where the user or the item is not in
    the data the model was trained on; the prediction is then that of the biases alone.
    """
    model = pipeline.Recommender(model_dir, resolve_device(device))
    users, items = pipeline.read_pairs(Path(pairs_from))
    predictions, known = model.predict_pairs(users, items)
    click.echo("user,item,prediction,known")
    for u, i, p, kn in zip(users, items, predictions.tolist(), known.tolist()):
        click.echo(_csv_row([u, i, f"{p:.4f}", "true" if kn else "false"]))


def _recommend_pair(model_dir: Path, pair: Optional[str], k: int, as_json: bool) -> None:
    """``recommend --ways 3 --pair HEAD,RELATION``: the top tails, one CSV row (or JSON object) each."""
    if pair is None:
        raise NaspError("--ways 3 recommends the tails of one pair: give --pair HEAD,RELATION")
    parts = pair.split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise NaspError(f"--pair {pair!r}: give HEAD,RELATION (two ids of the model's data)")
    rows = tensor.TripleRecommender(model_dir).recommend(parts[0].strip(), parts[1].strip(), k)
    if as_json:
        click.echo(json.dumps({"pair": [p.strip() for p in parts], "items": rows}))
        return
    click.echo("rank,item,score")
    for row in rows:
        click.echo(_csv_row([str(row["rank"]), row["item"], f"{row['score']:.4f}"]))


def _print_single(user: str, items: list[dict], as_json: bool) -> None:
    """One user's list: a JSON object, or a header line and one row per item."""
    if as_json:
        click.echo(json.dumps({"user": user, "items": items}))
        return
    if not items:
        click.echo(f"user {user}: nothing left to recommend (rated every item the model knows)")
        return
    titles = any(row["title"] for row in items)
    click.echo(f"{'rank':>4}  {'score':>5}  item" + ("  title" if titles else ""))
    for row in items:
        title = f"  {row['title']}" if row["title"] else ""
        click.echo(f"{row['rank']:>4}  {row['score']:.3f}  {row['item']}{title}")


def _csv_row(fields: list[str]) -> str:
    """One CSV line (fields quoted where they must be)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(fields)
    return buf.getvalue()
