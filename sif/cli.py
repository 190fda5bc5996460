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
from nasp.errors import NaspError
from nasp.devices import resolve_device
from nasp.strategies import search_strategy_names

from . import pipeline, tensor
from .data import SPLITS
from .estimator import SIF, SIFOptions, model_names
from .itemitem import DEFAULT_LAMBDAS, DEFAULT_NEIGHBOURS, DEFAULT_SHRINK
from .lightgcn import DEFAULT_LAYERS, LightGCNConfig
from .model import HISTORY_REFRESHES, MAX_DIM, ModelConfig
from .space import OUTPUT_BOUNDS, INTERACTION_FUNCTIONS, MLP_FORMS, SPACES
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
    nasp sif predict --model RUN --pairs FILE      predictions for (user, item) pairs
    """


def run_command_options(f: Callable) -> Callable:
    """``--threads``, ``--amp``, the run options and ``--resume``: every command that trains."""
    return threads_option(1)(amp_option(run_options(resume_option(f))))


def data_options(f: Callable) -> Callable:
    f = click.option("--ways", type=int, default=2, show_default=True,
                     help="Id columns of the data: 2 (user, item) or 3 (head, relation, tail; optionally a value; --task ranking: "
                          "filtered MRR and Hits@1/3/10 of knowledge-graph completion; docs/sif.md 'Three-way data').")(f)
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
    f = click.option("--columns", default=None, metavar="user,item[,rating][,timestamp]",
                     help="The role of each column of the data files, in order ('-' skips a column), e.g. item,user,-,rating "
                          "[default: the header's names, else user,item,rating,timestamp].")(f)
    f = click.option("--sep", default=None, metavar="SEP",
                     help="Field separator of the data files, e.g. ';', '|', '::' or tab [default: sniffed: '::', tab, ',' or whitespace].")(f)
    f = click.option("--valid-data", default=None, help="A separate validation file; then no validation is split off --data.")(f)
    f = click.option("--test-data", default=None, help="A separate test file; then no test is split off --data.")(f)
    f = click.option("--task", type=click.Choice(list(TASKS.names())), default="rating", show_default=True,
                     help="rating: predict explicit ratings (RMSE); ranking: implicit feedback, every row an interaction (NDCG@K, Recall@K...).")(f)
    f = click.option("--data", cls=RequiredUnlessResume,
                     help="Ratings or interaction file (u.data, ratings.dat, ratings.csv, .inter, .zip) or a known name (ml-100k, ml-1m, ...).")(f)
    return f


def model_options(f: Callable) -> Callable:
    f = click.option("--batch-size", type=click.IntRange(min=1), default=None, help=f"Rows per step {_both('batch_size')}; lightgcn: {LightGCNConfig.defaults.batch_size}.")(f)
    f = click.option("--lr", type=LEARNING_RATE, default=None,
                     help=f"Adagrad learning rate of embeddings, biases, heads {_both('lr')}; "
                          f"lightgcn: Adam's [default: {LightGCNConfig.defaults.lr:g}].")(f)
    f = click.option("--reg", type=WEIGHT, default=None,
                     help=f"L2 weight on each row's embeddings and biases {_both('reg')}; lightgcn: "
                          f"{LightGCNConfig.defaults.reg:g}, on the rows' layer-0 embeddings.")(f)
    f = click.option("--implicit-reg", type=WEIGHT, default=None,
                     help=f"L2 weight on each row's implicit item factor (with --implicit) {_both('implicit_reg')}.")(f)
    f = click.option("--implicit/--no-implicit", default=None,
                     help="SVD++ implicit feedback: add the user's training items' factors to the user vector (default on; off for gmf and neumf).")(f)
    f = click.option("--history-refreshes", type=click.IntRange(min=0), default=None,
                     help=f"With --implicit: times per epoch the cached history sums hand their gradient to the item factors; "
                          f"0: exact sums at every step (slower; always so with --strategy darts2) "
                          f"[default: {HISTORY_REFRESHES}].")(f)
    f = click.option("--head", type=click.Choice(list(OUTPUT_BOUNDS)), default=None,
                     help="Bound on each op's output vector w (length k): box (|w_k| <= 1/sqrt(k), inside the unit ball) or ball (the authors' unit L2 ball) [default: box].")(f)
    f = click.option("--biases/--no-biases", default=None, help="Global, user and item bias terms (default on; off for gmf and neumf).")(f)
    f = click.option("--gcn-layers", type=int, default=None, metavar="K",
                     help=f"lightgcn: propagation layers over the user-item graph (1 to 10) [default: {DEFAULT_LAYERS}, RecBole's].")(f)
    f = click.option("--knn-shrink", type=click.FloatRange(min=0), default=None,
                     help=f"itemknn: shrinkage added to the cosine similarity's denominator [default: {DEFAULT_SHRINK:g}].")(f)
    f = click.option("--knn-neighbours", default=None, metavar="K[,K...]",
                     help="itemknn: most similar items each item keeps; several: chosen on validation "
                          f"[default: {','.join(map(str, DEFAULT_NEIGHBOURS))}].")(f)
    f = click.option("--ease-lambda", default=None, metavar="L[,L...]",
                     help="ease: L2 weight of EASE^R's closed form; several: chosen on validation "
                          f"[default: {','.join(f'{v:g}' for v in DEFAULT_LAMBDAS)}].")(f)
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
        options.mlp = opts.get("mlp", ModelConfig.mlp)
    est = SIF(**dataclasses.asdict(options))
    if options.folds is None:
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
@data_options
@click.option("--strategy", type=click.Choice(SEARCH_STRATEGIES), default="nasp", show_default=True,
              help="nasp (proximal), no-auto (single level), darts, darts2, gdas, random, local (warm-started local "
                   "search: train the default model, then try each one-row change, one epoch each from the incumbent's "
                   "weights, and keep the best that beats the incumbent by --margin on the whole validation set; "
                   "--epochs is its budget, about one epoch per candidate of each row per pass; docs/sif.md).")
@click.option("--space", type=click.Choice(list(SPACES)), default="sif", show_default=True,
              help="sif: the paper's space (one row of vector-wise ops; element-wise MLPs, SVD++ user vector and box head fixed). "
                   "autocf: input encoding and element-wise function of each side, vector-wise op and prediction head searched "
                   "jointly (3,024 architectures; docs/sif.md).")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Search epochs, warm-up included.")
@click.option("--dim", type=click.IntRange(min=1, max=MAX_DIM), default=64, show_default=True,
              help="Embedding dimension (the tables must fit in the device's available memory).")
@model_options
@click.option("--arch-lr", type=LEARNING_RATE, default=None,
              help=f"Adam learning rate of alpha (and, with --mlp-on-valid, the element-wise MLPs) {_both('arch_lr')}.")
@click.option("--mlp", type=click.Choice(list(MLP_FORMS)), default=ModelConfig.mlp, show_default=True,
              help="Element-wise MLP g: residual (x + MLP(x), starts as the identity) or paper (the paper's "
                   "Linear(1,8)-tanh-Linear(8,1), random start). Saved in arch.json.")
@click.option("--mlp-on-valid", is_flag=True,
              help="Train the element-wise MLPs with the architecture on validation batches, as the paper does "
                   "(validation data then enter these weights and the searched model's validation score flatters it). "
                   "Default: they are weights, trained on training data only.")
@click.option("--warmup-epochs", type=WARMUP_EPOCHS, default=None,
              help="nasp/no-auto: epochs that train the weights on randomly sampled ops before alpha moves; local: "
                   "epochs that train the default model before the first change is tried; "
                   "'auto': until the validation metric stops improving "
                   "[default: auto (rating), 2 (ranking); local: 3].")
@click.option("--candidates", type=click.IntRange(min=1), default=None, help="Architectures tried by --strategy random (default: 10).")
@click.option("--margin", type=click.FloatRange(min=0), default=None,
              help="local: a one-row change replaces the incumbent when its validation metric beats the incumbent's, "
                   "trained as long, by this fraction of it (default: 0.001).")
@click.option("--retrain/--no-retrain", default=True, show_default=True, help="Retrain the found IFC to convergence and report test metrics.")
@click.option("--baselines", default=None, metavar="none|all|IFC[,IFC...]",
              help="Fixed models trained beside the searched one (plain embeddings, same settings) and compared on validation: "
                   "--ifc names (ranking: also ease, itemknn, lightgcn, the last with its own defaults of --lr, --reg and "
                   "--batch-size where not given), or fixed models of the autocf space as ROW=NAME[+ROW=NAME] changes of its "
                   "default SVD++ model (e.g. item_input=both); 'all': every op of the paper's space "
                   "[default: multiply,item_input=both (rating), multiply,ease (ranking)].")
@click.option("--keep", type=click.Choice(["best", "searched"]), default="best", show_default=True,
              help="The model kept (model.pt, test metrics): whichever validates best, or always the searched one. "
                   "The summary says which won and by how much (searched_margin).")
@click.option("--warm-start/--fresh", default=False, show_default=True,
              help="Retrain from the searched weights of the chosen op, or from fresh embeddings as in the paper (more accurate, see docs/sif.md).")
@click.option("--max-epochs", type=click.IntRange(min=1), default=100, show_default=True, help="Retraining epochs at most (early stopping on validation).")
@click.option("--patience", type=click.IntRange(min=1), default=3, show_default=True, help="Retraining stops after this many epochs without a better validation score.")
@run_command_options
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
@click.option("--arch", type=click.Path(path_type=Path), default=None, help="arch.json (or a search run directory) to retrain.")
@click.option("--ifc", type=click.Choice(model_names()), default=None,
              help="A fixed interaction function instead (multiply = SVD++, or biased MF with --no-implicit, BPR-MF when ranking; "
                   "gmf; mlp = NCF tower; neumf; pop = popularity, ranking only), or an item-item model in closed form "
                   "(ease = EASE^R, itemknn = cosine ItemKNN; ranking only), or lightgcn = LightGCN (graph-propagated "
                   "embeddings, BPR, Adam; ranking only; --gcn-layers).")
@click.option("--choices", default=None, metavar="ROW=NAME[+ROW=NAME...]",
              help="A fixed model of the autocf space instead: these changes of its default SVD++ model "
                   "(e.g. item_input=both+op=max; rows: user_input, item_input, user_function, item_function, op, head), "
                   "the --baselines syntax; the summary's choices name the whole model.")
@data_options
@click.option("--dim", type=click.IntRange(min=1, max=MAX_DIM), default=None,
              help="Embedding dimension (default: the arch's, else 64; the tables must fit in the device's available memory).")
@model_options
@click.option("--max-epochs", type=click.IntRange(min=1), default=100, show_default=True, help="Training epochs at most.")
@click.option("--folds", type=int, default=None, metavar="K",
              help="K-fold cross-validation instead of one split: every row tested once, each fold trained on the others "
                   "(validation split off them), folds fixed by --seed; the summary gives every metric's mean, _std and "
                   "per-fold values (fold-K/ holds each fold's run; no model.pt).")
@click.option("--patience", type=click.IntRange(min=1), default=3, show_default=True, help="Stop after this many epochs without a better validation score.")
@run_command_options
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
@click.option("--pair", default=None, metavar="HEAD,RELATION", help="--ways 3: the top tails (third-column ids) of this pair.")
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
