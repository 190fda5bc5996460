"""``nasp sif``: search, train and recommend with searched interaction functions."""
from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Callable, Optional, Union

import click

from nasp.commands import (WARMUP_EPOCHS, RequiredUnlessResume, RunCommand, data_dir_option, finish_run, release_with_command,
                           resume_option, run_options, start_run, threads_option)
from nasp.runs import CONFIG, RunDir, read_json, resolve_device, set_rng_state
from nasp.strategies import STRATEGIES, search_strategy_names
from nasp.strategies.proximal import AUTO, check_warmup

from . import pipeline
from .engine import TrainSettings
from .model import LEGACY, ModelConfig
from .space import HEADS, INTERACTIONS, MLP_FORMS, SEARCH_SPACE

DEFAULTS = TrainSettings()
SEARCH_STRATEGIES = search_strategy_names()


@click.group()
def sif() -> None:
    """Collaborative filtering: search the interaction function (SIF).

    After Yao et al., "Efficient Neural Interaction Function Search for Collaborative Filtering", WWW 2020.

    \b
    nasp sif search --data ml-100k              search + retrain, writes a run directory
    nasp sif train --ifc multiply --data ml-100k   a fixed-IFC baseline (SVD++)
    nasp sif recommend --model RUN --user 196   top-10 unseen items for a user
    """


def data_options(f: Callable) -> Callable:
    f = click.option("--valid-ratio", type=float, default=0.1, show_default=True,
                     help="Fraction of all ratings held out for validation (selection, early stopping).")(f)
    f = click.option("--test-ratio", type=float, default=0.2, show_default=True,
                     help="Fraction of all ratings held out for test (ignored with --test-data).")(f)
    f = data_dir_option(f)
    f = click.option("--test-data", default=None, help="A separate test ratings file; validation then comes out of --data.")(f)
    f = click.option("--data", cls=RequiredUnlessResume,
                     help="Ratings file (u.data, ratings.dat, ratings.csv, .inter, .zip) or a known name (ml-100k, ml-1m, ...).")(f)
    return f


def model_options(f: Callable) -> Callable:
    f = click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS.batch_size, show_default=True, help="Ratings per step.")(f)
    f = click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.lr, show_default=True, help="Adagrad learning rate of embeddings, biases, heads.")(f)
    f = click.option("--reg", type=click.FloatRange(min=0), default=DEFAULTS.reg, show_default=True, help="L2 weight on each rating's embeddings and biases.")(f)
    f = click.option("--implicit-reg", type=click.FloatRange(min=0), default=DEFAULTS.implicit_reg, show_default=True,
                     help="L2 weight on each rating's implicit item factor (with --implicit).")(f)
    f = click.option("--implicit/--no-implicit", default=None,
                     help="SVD++ implicit feedback: add the user's rated items' factors to the user vector (default on; off for gmf).")(f)
    f = click.option("--head", type=click.Choice(list(HEADS)), default=None,
                     help="Bound on each op's output vector w (length k): box (|w_k| <= 1/sqrt(k), inside the unit ball) or ball (the authors' unit L2 ball) [default: box].")(f)
    f = click.option("--biases/--no-biases", default=None, help="Global, user and item bias terms (default on; off for gmf).")(f)
    f = click.option("--refit/--no-refit", default=True, show_default=True,
                     help="After early stopping, train again on train+valid for the chosen epoch count; test metrics come from the refit.")(f)
    return f


def _settings(opts: dict, arch_lr: float = DEFAULTS.arch_lr) -> TrainSettings:
    return TrainSettings(lr=opts["lr"], reg=opts["reg"], implicit_reg=opts["implicit_reg"], batch_size=opts["batch_size"],
                         arch_lr=arch_lr)


def _switch(opts: dict, name: str, ifc: Optional[str] = None, saved: Optional[dict] = None) -> bool:
    """--biases/--implicit: as given, else as the arch file saved it, else on (off for gmf)."""
    if opts[name] is not None:
        return opts[name]
    if saved is not None:
        return bool(saved.get(name, LEGACY[name]))
    return ifc != "gmf"


def _warmup(opts: dict) -> Union[int, str, None]:
    """--warmup-epochs, defaulting to ``auto`` (no warm-up for a one-epoch search), checked against
    --epochs; as given (None: not given) for strategies without a warm-up, which warn that they
    ignore it."""
    given = opts["warmup_epochs"]
    if not STRATEGIES.get(opts["strategy"]).uses_warmup:
        return given
    return check_warmup((AUTO if opts["epochs"] > 1 else 0) if given is None else given, opts["epochs"])


def _data(opts: dict) -> pipeline.DataOptions:
    return pipeline.DataOptions(opts["data"], opts["test_data"], opts["data_dir"], opts["test_ratio"], opts["valid_ratio"], opts["seed"])


@sif.command(cls=RunCommand)
@data_options
@click.option("--strategy", type=click.Choice(SEARCH_STRATEGIES), default="nasp", show_default=True,
              help="nasp (proximal), no-auto (single level), darts, darts2, gdas, random.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Search epochs, warm-up included.")
@click.option("--dim", type=click.IntRange(min=1), default=64, show_default=True, help="Embedding dimension.")
@model_options
@click.option("--arch-lr", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.arch_lr, show_default=True, help="Adam learning rate of alpha and the element-wise MLPs.")
@click.option("--mlp", type=click.Choice(list(MLP_FORMS)), default=ModelConfig.mlp, show_default=True,
              help="Element-wise MLP g: residual (x + MLP(x), starts as the identity) or paper (the paper's "
                   "Linear(1,8)-tanh-Linear(8,1), random start). Saved in arch.json.")
@click.option("--warmup-epochs", type=WARMUP_EPOCHS, default=None,
              help="nasp/no-auto: epochs that train the weights on randomly sampled ops before alpha moves; "
                   "'auto': until the validation RMSE stops improving "
                   "[default: auto].")
@click.option("--candidates", type=click.IntRange(min=1), default=None, help="Architectures tried by --strategy random (default: 10).")
@click.option("--retrain/--no-retrain", default=True, show_default=True, help="Retrain the found IFC to convergence and report test metrics.")
@click.option("--warm-start/--fresh", default=False, show_default=True,
              help="Retrain from the searched weights of the chosen op, or from fresh embeddings as in the paper (more accurate, see docs/sif.md).")
@click.option("--max-epochs", type=click.IntRange(min=1), default=100, show_default=True, help="Retraining epochs at most (early stopping on validation).")
@click.option("--patience", type=click.IntRange(min=1), default=3, show_default=True, help="Retraining stops after this many epochs without a better validation RMSE.")
@threads_option(1)
@run_options
@resume_option
def search(**opts) -> None:
    """Search the interaction function on --data, then retrain it.

    Writes RUN/config.json, metrics.jsonl, checkpoint.pt, arch.json (the chosen IFC and the
    searched element-wise MLPs), retrain/, refit/, model.pt and summary.json (valid_rmse,
    test_rmse, test_mae, seconds). Selection uses validation data only, never test.
    """
    # read the data first: bad input must not leave a run directory behind
    loaded = None if opts["resume"] else pipeline.load_splits(_data(opts))
    if not opts["resume"]:
        _warmup(opts)
    run, opts, device = start_run("sif-search", opts)
    warmup = _warmup(opts)
    t0 = time.perf_counter()
    settings = _settings(opts, opts["arch_lr"])
    splits, path = loaded or pipeline.load_splits(_data(opts))
    config = ModelConfig(splits.ids.num_users, splits.ids.num_items, dim=opts["dim"], ops=SEARCH_SPACE, elementwise=True,
                         biases=_switch(opts, "biases"), implicit=_switch(opts, "implicit"), head=opts["head"] or ModelConfig.head,
                         mlp=opts.get("mlp", LEGACY["mlp"]),  # runs started before --mlp saved none
                         global_mean=float(splits.train.ratings.mean()))
    if run.resume and run.file("search.json").exists():
        arch = pipeline.load_arch(run.file("arch.json"))
        found = read_json(run.file("search.json"))
        # the retraining starts from the random state the finished search left, as uninterrupted
        set_rng_state(run.load_checkpoint()["rng"])
    else:
        arch, found = pipeline.search(run, splits, config, settings, opts["strategy"], opts["epochs"],
                                      opts["seed"], device, opts["candidates"], warmup)
        run.write_json("search.json", found)
    summary = {**found, **pipeline.data_summary(splits)}
    if opts["retrain"]:
        retrain_config = ModelConfig.from_dict({**config.to_dict(), "ops": [arch["interaction"]]})
        init = None
        if opts["warm_start"]:
            init = pipeline.chosen_op_state(run.load_checkpoint()["network"], config.ops, arch["interaction"])
        net, trained = _fit(run, "retrain", splits, retrain_config, settings, opts, device, arch.get("elementwise_mlp"), init)
        pipeline.save_model(run.file(pipeline.MODEL_FILE), net, splits, path)
        summary = {**summary, **trained}
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    finish_run(run, _headline_first(summary), opts["as_json"])


HEADLINE = ("interaction", "valid_rmse", "test_rmse", "test_mae", "seconds", "search_seconds", "train_seconds")


def _headline_first(summary: dict) -> dict:
    """The keys people look for first, then the rest in their order."""
    return {**{k: summary[k] for k in HEADLINE if k in summary}, **summary}


def _subrun(run: RunDir, name: str, config: ModelConfig, settings: TrainSettings) -> RunDir:
    """RUN/<name>/, resumed when it was started before."""
    out = run.file(name)
    rdir = release_with_command(RunDir(out, resume=(out / CONFIG).exists()))
    if not rdir.resume:
        rdir.write_config({"command": name, "model": config.to_dict(), "settings": settings.to_dict()})
    return rdir


def _fit(run: RunDir, name: Optional[str], splits, config, settings, opts, device, mlp_state=None, init_state=None):
    """Train with early stopping (in RUN/<name>/, or RUN itself), then refit on train+valid
    (in RUN/refit/) unless --no-refit; returns the network to save and the summary."""
    rdir = _subrun(run, name, config, settings) if name else run
    net, summary = pipeline.train(rdir, splits, config, settings, opts["max_epochs"], opts["patience"], opts["seed"],
                                  device, mlp_state, init_state=init_state)
    source = "early-stopped" if len(splits.valid) else "last epoch"  # nothing to stop on without validation
    if opts["refit"] and len(splits.valid):
        early = {k: summary.pop(k) for k in ("test_rmse", "test_mae") if k in summary}
        if "test_rmse" in early:
            summary["early_stopped_test_rmse"] = early["test_rmse"]
        net, refitted = pipeline.refit(_subrun(run, "refit", config, settings), splits, config, settings,
                                       summary["best_epoch"], opts["seed"], device, mlp_state, init_state)
        summary.update(refitted)
        source = "refit"
    if "test_rmse" in summary:  # absent without a test split (--test-ratio 0)
        summary["test_rmse_source"] = source
    return net, summary


@sif.command(cls=RunCommand)
@click.option("--arch", type=click.Path(path_type=Path), default=None, help="arch.json (or a search run directory) to retrain.")
@click.option("--ifc", type=click.Choice(INTERACTIONS.names()), default=None,
              help="A fixed interaction function instead (multiply = SVD++, or biased MF with --no-implicit; gmf; mlp = NCF tower).")
@data_options
@click.option("--dim", type=click.IntRange(min=1), default=None, help="Embedding dimension (default: the arch's, else 64).")
@model_options
@click.option("--max-epochs", type=click.IntRange(min=1), default=100, show_default=True, help="Training epochs at most.")
@click.option("--patience", type=click.IntRange(min=1), default=3, show_default=True, help="Stop after this many epochs without a better validation RMSE.")
@threads_option(1)
@run_options
@resume_option
def train(**opts) -> None:
    """Train one interaction function (a searched one or a baseline).

    Trains to convergence (early stopping on validation), then refits on train+valid for that
    many epochs (--no-refit keeps the early-stopped model).

    Give either --arch (a searched IFC, keeping its element-wise MLPs) or --ifc (a baseline).
    """
    if (opts["arch"] is None) == (opts["ifc"] is None):
        raise click.UsageError("give exactly one of --arch FILE or --ifc NAME")
    arch = pipeline.load_arch(opts["arch"]) if opts["arch"] is not None else None
    dim = opts["dim"] or (arch["model"]["dim"] if arch else 64)
    splits, path = pipeline.load_splits(_data(opts))
    run, opts, device = start_run("sif-train", opts)
    t0 = time.perf_counter()
    settings = _settings(opts)
    name = arch["interaction"] if arch else opts["ifc"]
    saved = arch["model"] if arch else None
    mlp_state = arch.get("elementwise_mlp") if arch else None
    config = ModelConfig(splits.ids.num_users, splits.ids.num_items, dim=dim, ops=(name,), elementwise=mlp_state is not None,
                         biases=_switch(opts, "biases", name, saved), implicit=_switch(opts, "implicit", name, saved),
                         head=opts["head"] or (saved.get("head", LEGACY["head"]) if saved else ModelConfig.head),
                         mlp=saved.get("mlp", LEGACY["mlp"]) if saved else ModelConfig.mlp, global_mean=float(splits.train.ratings.mean()))
    net, trained = _fit(run, None, splits, config, settings, opts, device, mlp_state)
    pipeline.save_model(run.file(pipeline.MODEL_FILE), net, splits, path)
    summary = {**trained, **pipeline.data_summary(splits), "seconds": round(time.perf_counter() - t0, 3)}
    finish_run(run, _headline_first(summary), opts["as_json"])


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
    """Top-K items a user has not rated, by predicted rating.

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
