"""``nasp sif``: search, train and recommend with searched interaction functions."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Callable, Optional

import click

from nasp.commands import (LEARNING_RATE, WARMUP_EPOCHS, WEIGHT, RequiredUnlessResume, RunCommand, amp_option, data_dir_option, finish_run,
                           resume_option, run_options, start_run, threads_option)
from nasp.runs import resolve_device
from nasp.strategies import search_strategy_names

from . import pipeline
from .data import SPLITS
from .estimator import SIF, SIFOptions
from .model import HISTORY_REFRESHES, LEGACY, MAX_DIM, ModelConfig
from .space import HEADS, INTERACTIONS, MLP_FORMS, SPACES
from .tasks import TASKS

RATING, RANKING = TASKS.get("rating").defaults, TASKS.get("ranking").defaults
SEARCH_STRATEGIES = search_strategy_names()


def _both(name: str) -> str:
    """``[default: X (rating), Y (ranking)]`` for a training setting."""
    return f"[default: {getattr(RATING, name):g} (rating), {getattr(RANKING, name):g} (ranking)]"


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
    """


def data_options(f: Callable) -> Callable:
    f = click.option("--negatives", type=int, default=None,
                     help="Ranking: sampled negatives per positive (1 to 1000), uniform over items the user has not interacted with in "
                          "training [default: 4].")(f)
    f = click.option("--loss", type=click.Choice(["bpr", "bce"]), default=None, help="Ranking loss [default: bpr].")(f)
    f = click.option("--topk", default=None, metavar="K[,K...]",
                     help="Ranking cut-offs of the metrics; the first selects (valid_ndcg@K) [default: 10,20].")(f)
    f = click.option("--min-rating", type=float, default=None,
                     help="Ranking: keep only rows rated at least this (RecBole's threshold) [default: every row].")(f)
    f = click.option("--valid-ratio", type=float, default=None,
                     help="Held out for validation (selection, early stopping): a fraction of all rows (--split global) or of each user's "
                          "[default: 0.1].")(f)
    f = click.option("--test-ratio", type=float, default=None,
                     help="Held out for test (ignored with --test-data) [default: 0.2 (rating), 0.1 (ranking)].")(f)
    f = click.option("--split", type=click.Choice(list(SPLITS.names())), default=None,
                     help="global: random over all rows; random: per user, RecBole's ratio split; temporal: per user by timestamp, "
                          "newest to test [default: global (rating), random (ranking)].")(f)
    f = data_dir_option(f)
    f = click.option("--valid-data", default=None, help="A separate validation file; then no validation is split off --data.")(f)
    f = click.option("--test-data", default=None, help="A separate test file; then no test is split off --data.")(f)
    f = click.option("--task", type=click.Choice(list(TASKS.names())), default="rating", show_default=True,
                     help="rating: predict explicit ratings (RMSE); ranking: implicit feedback, every row an interaction (NDCG@K, Recall@K...).")(f)
    f = click.option("--data", cls=RequiredUnlessResume,
                     help="Ratings or interaction file (u.data, ratings.dat, ratings.csv, .inter, .zip) or a known name (ml-100k, ml-1m, ...).")(f)
    return f


def model_options(f: Callable) -> Callable:
    f = click.option("--batch-size", type=click.IntRange(min=1), default=None, help=f"Rows per step {_both('batch_size')}.")(f)
    f = click.option("--lr", type=LEARNING_RATE, default=None,
                     help=f"Adagrad learning rate of embeddings, biases, heads {_both('lr')}.")(f)
    f = click.option("--reg", type=WEIGHT, default=None,
                     help=f"L2 weight on each row's embeddings and biases {_both('reg')}.")(f)
    f = click.option("--implicit-reg", type=WEIGHT, default=None,
                     help=f"L2 weight on each row's implicit item factor (with --implicit) {_both('implicit_reg')}.")(f)
    f = click.option("--implicit/--no-implicit", default=None,
                     help="SVD++ implicit feedback: add the user's training items' factors to the user vector (default on; off for gmf and neumf).")(f)
    f = click.option("--history-refreshes", type=click.IntRange(min=0), default=None,
                     help=f"With --implicit: times per epoch the cached history sums hand their gradient to the item factors; "
                          f"0: exact sums at every step (slower; always so with --strategy darts2) "
                          f"[default: {HISTORY_REFRESHES}].")(f)
    f = click.option("--head", type=click.Choice(list(HEADS)), default=None,
                     help="Bound on each op's output vector w (length k): box (|w_k| <= 1/sqrt(k), inside the unit ball) or ball (the authors' unit L2 ball) [default: box].")(f)
    f = click.option("--biases/--no-biases", default=None, help="Global, user and item bias terms (default on; off for gmf and neumf).")(f)
    f = click.option("--refit/--no-refit", default=None,
                     help="After early stopping, train again on train+valid for the chosen epoch count; test metrics come from the refit "
                          "[default: refit (rating), no refit (ranking)].")(f)
    return f


def _estimator(opts: dict) -> SIF:
    """The ``SIF`` of a command's options (its ``SIFOptions``: CLI-only ones are left out),
    validated and with its data read and checked: the pre-run validation of every command
    (``nasp.config``). Runs started before ``--mlp`` existed saved none."""
    options = SIFOptions.of({k: v for k, v in opts.items() if k in SIFOptions.field_names()})
    if "epochs" in opts:
        options.mlp = opts.get("mlp", LEGACY["mlp"])
    est = SIF(**dataclasses.asdict(options))
    est.load_data(opts["data"], opts.get("valid_data"), opts.get("test_data"))
    return est


def _run(command: str, opts: dict) -> None:
    """Every check of options and data, then the run directory, the fit and the summary
    (on --resume the options are the saved ones, so the estimator is built after start_run)."""
    est = None if opts["resume"] else _estimator(opts)
    run, opts, _ = start_run(command, opts)
    est = est or _estimator(opts)
    est.fit(run=run)
    finish_run(run, _headline_first(est.summary_), opts["as_json"])


@sif.command(cls=RunCommand)
@data_options
@click.option("--strategy", type=click.Choice(SEARCH_STRATEGIES), default="nasp", show_default=True,
              help="nasp (proximal), no-auto (single level), darts, darts2, gdas, random.")
@click.option("--space", type=click.Choice(list(SPACES)), default="sif", show_default=True,
              help="sif: the paper's space (one row of vector-wise ops; element-wise MLPs, SVD++ user vector and box head fixed). "
                   "autocf: input encoding and element-wise function of each side, vector-wise op and prediction head searched "
                   "jointly (3,024 architectures; docs/sif.md).")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Search epochs, warm-up included.")
@click.option("--dim", type=click.IntRange(min=1, max=MAX_DIM), default=64, show_default=True,
              help="Embedding dimension (the tables must fit in the device's available memory).")
@model_options
@click.option("--arch-lr", type=LEARNING_RATE, default=None,
              help=f"Adam learning rate of alpha and the element-wise MLPs {_both('arch_lr')}.")
@click.option("--mlp", type=click.Choice(list(MLP_FORMS)), default=ModelConfig.mlp, show_default=True,
              help="Element-wise MLP g: residual (x + MLP(x), starts as the identity) or paper (the paper's "
                   "Linear(1,8)-tanh-Linear(8,1), random start). Saved in arch.json.")
@click.option("--warmup-epochs", type=WARMUP_EPOCHS, default=None,
              help="nasp/no-auto: epochs that train the weights on randomly sampled ops before alpha moves; "
                   "'auto': until the validation metric stops improving "
                   "[default: auto (rating), 2 (ranking)].")
@click.option("--candidates", type=click.IntRange(min=1), default=None, help="Architectures tried by --strategy random (default: 10).")
@click.option("--retrain/--no-retrain", default=True, show_default=True, help="Retrain the found IFC to convergence and report test metrics.")
@click.option("--baselines", default=None, metavar="none|all|IFC[,IFC...]",
              help="Fixed models trained beside the searched one (plain embeddings, same settings) and compared on validation: "
                   "IFC names, or fixed models of the autocf space as ROW=NAME[+ROW=NAME] changes of its default SVD++ model "
                   "(e.g. item_input=both); 'all': every op of the paper's space "
                   "[default: multiply,item_input=both (rating), multiply (ranking)].")
@click.option("--keep", type=click.Choice(["best", "searched"]), default="best", show_default=True,
              help="The model kept (model.pt, test metrics): whichever validates best, or always the searched one. "
                   "The summary says which won and by how much (searched_margin).")
@click.option("--warm-start/--fresh", default=False, show_default=True,
              help="Retrain from the searched weights of the chosen op, or from fresh embeddings as in the paper (more accurate, see docs/sif.md).")
@click.option("--max-epochs", type=click.IntRange(min=1), default=100, show_default=True, help="Retraining epochs at most (early stopping on validation).")
@click.option("--patience", type=click.IntRange(min=1), default=3, show_default=True, help="Retraining stops after this many epochs without a better validation score.")
@threads_option(1)
@amp_option
@run_options
@resume_option
def search(**opts) -> None:
    """Search the interaction function on --data, then retrain it.

    Writes RUN/config.json, metrics.jsonl, checkpoint.pt, arch.json (the chosen IFC, with
    --space autocf the choice of every row, and the searched element-wise MLPs), retrain/,
    baseline-NAME/ (--baselines), refit/ (rating), model.pt
    (the kept model: --keep) and summary.json
    (rating: valid_rmse, test_rmse, test_mae; ranking: valid_ndcg@K, test_ndcg@K, test_recall@K,
    test_mrr@K, test_hit@K, test_precision@K; seconds). Selection uses validation data only.
    """
    _run("sif-search", opts)


HEADLINE = ("interaction", "kept", "searched_interaction", "searched_margin", "valid_rmse", "valid_ndcg@10", "test_rmse", "test_mae", "test_ndcg@10", "test_recall@10",
            "test_mrr@10", "seconds", "search_seconds", "train_seconds")


def _headline_first(summary: dict) -> dict:
    """The keys people look for first, then the rest in their order."""
    return {**{k: summary[k] for k in HEADLINE if k in summary}, **summary}


@sif.command(cls=RunCommand)
@click.option("--arch", type=click.Path(path_type=Path), default=None, help="arch.json (or a search run directory) to retrain.")
@click.option("--ifc", type=click.Choice(INTERACTIONS.names()), default=None,
              help="A fixed interaction function instead (multiply = SVD++, or biased MF with --no-implicit, BPR-MF when ranking; "
                   "gmf; mlp = NCF tower; neumf; pop = popularity, ranking only).")
@data_options
@click.option("--dim", type=click.IntRange(min=1, max=MAX_DIM), default=None,
              help="Embedding dimension (default: the arch's, else 64; the tables must fit in the device's available memory).")
@model_options
@click.option("--max-epochs", type=click.IntRange(min=1), default=100, show_default=True, help="Training epochs at most.")
@click.option("--patience", type=click.IntRange(min=1), default=3, show_default=True, help="Stop after this many epochs without a better validation score.")
@threads_option(1)
@amp_option
@run_options
@resume_option
def train(**opts) -> None:
    """Train one interaction function (a searched one or a baseline).

    Trains to convergence (early stopping on validation), then (rating task) refits on
    train+valid for that many epochs (--no-refit keeps the early-stopped model).

    Give either --arch (a searched IFC, keeping its element-wise MLPs) or --ifc (a baseline).
    """
    if (opts["arch"] is None) == (opts["ifc"] is None):
        raise click.UsageError("give exactly one of --arch FILE or --ifc NAME")
    _run("sif-train", opts)


@sif.command()
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True, help="A run directory of search or train (or its model.pt).")
@click.option("--user", default=None, help="The user's raw id, as in the ratings file.")
@click.option("--users", "users_from", default=None, metavar="FILE|all",
              help="Many users in one start-up: a file of raw ids (one a line) or 'all'; one CSV row per item "
                   "(with --json one JSON line per user).")
@click.option("-k", "--top", "k", type=click.IntRange(min=1), default=10, show_default=True, help="How many items.")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per user, one a line.")
def recommend(model_dir: Path, user: Optional[str], users_from: Optional[str], k: int, device: str, as_json: bool) -> None:
    """Top-K items a user has not interacted with, by predicted rating (rating task) or score (ranking).

    Never offers an item the user rated anywhere in the data the model was given: the
    training, validation and test ratings alike. Titles come from u.item, movies.dat or
    movies.csv beside the ratings when there is one. Give --user ID, or --users FILE|all.
    """
    if (user is None) == (users_from is None):
        raise click.UsageError("give exactly one of --user ID or --users FILE|all")
    model = pipeline.Recommender(model_dir, resolve_device(device))
    if user is not None:
        _print_single(user, model.top(user, k), as_json)
        return
    users = model.user_ids if users_from == "all" else pipeline.read_user_list(Path(users_from))
    for u in users:
        model.user_index(u)  # every id is checked before anything is printed
    with_titles = bool(model.titles)
    if not as_json:
        click.echo("user,rank,item,score" + (",title" if with_titles else ""))
    for u in users:
        items = model.top(u, k)
        if as_json:
            click.echo(json.dumps({"user": u, "items": items}))
            continue
        if not items:
            click.echo(f"user {u}: nothing left to recommend (rated every item the model knows)", err=True)
        for row in items:
            fields = [u, str(row["rank"]), row["item"], f"{row['score']:.4f}"] + ([row["title"] or ""] if with_titles else [])
            click.echo(_csv_row(fields))


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
