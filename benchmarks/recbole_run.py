"""Run one RecBole 1.2.1 model (BPR, NeuMF or LightGCN) on pre-split atomic files; write JSON.

Run it with the python of the venv made by ``benchmarks/recbole_setup.sh`` (RecBole 1.2.1 needs
older numpy/scipy/pandas than nasp); it does not import nasp:

    .venv-recbole/bin/python benchmarks/recbole_run.py --split-dir DIR --dataset NAME \
        --model BPR --seed 0 --out bpr.json [--epochs N] [--topk 10,20]

DIR holds ``NAME.train.inter``, ``NAME.valid.inter``, ``NAME.test.inter`` (tab-separated atomic
files with a header ``user_id:token  item_id:token [rating:float] [timestamp:float]``, see
``benchmarks/recbole_files.py``). RecBole is run with its default model and training settings
(``epochs`` only when ``--epochs`` is given) and these fixed ones:

* the three files are read as they are (``benchmark_filename``): no re-split, and RecBole skips
  all interaction filtering for benchmark files (the filtering options are set off as well);
  every row is an interaction (no ``threshold``), duplicates are kept (``rm_dup_inter: None``);
  only the user and item columns are loaded;
* the files are linked into a fresh temporary folder under an internal data set name, so that
  neither RecBole's own ``ml-100k`` (which the name ``ml-100k`` would select, files and settings)
  nor a cached dataset/dataloader of another split can be read; checkpoints, logs and
  tensorboard files go there too and are deleted afterwards;
* full ranking over all items (``eval_args.mode: full``) for each user of the valid (test) file;
  on valid a user's train items are excluded from the ranking, on test the train and valid items
  (minus that user's test items); metrics Recall, MRR, NDCG, Hit, Precision at ``--topk``; early
  stopping (RecBole's ``stopping_step``, 10 evaluations without a better NDCG@10), and the test
  numbers are those of the best-validation checkpoint;
* CPU only.

JSON: model, seed, valid {metric@k: value}, test {...}, seconds (training with validation + the
test evaluation), seconds_total (also data loading), epochs_trained, best_epoch, counts of
users/items/interactions as RecBole saw them, recbole_version and the settings used.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time

PARTS = ("train", "valid", "test")
MODELS = ("BPR", "NeuMF", "LightGCN")
RECBOLE_METRICS = ["Recall", "MRR", "NDCG", "Hit", "Precision"]
INTERNAL_NAME = "benchsplit"  # not one of RecBole's bundled data set names


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--split-dir", required=True, help="folder with NAME.{train,valid,test}.inter")
    p.add_argument("--dataset", required=True, help="NAME of the files")
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--epochs", type=int, default=None, help="override RecBole's default (300)")
    p.add_argument("--topk", default="10,20", help="comma-separated K (default 10,20); 10 must be among them")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="RecBole logs warnings only")
    args = p.parse_args(argv)
    try:
        args.topk = sorted({int(k) for k in args.topk.split(",") if k.strip()})
    except ValueError:
        p.error(f"--topk must be comma-separated integers, got {args.topk!r}")
    if not args.topk or min(args.topk) <= 0:
        p.error("--topk needs positive integers")
    if 10 not in args.topk:
        p.error("--topk must include 10 (NDCG@10 is the validation metric)")
    if args.epochs is not None and args.epochs <= 0:
        p.error("--epochs must be positive")
    return args


def check_files(split_dir: str, name: str) -> dict[str, dict]:
    """Paths, header fields and row counts of the three files; raises SystemExit when one is wrong."""
    info = {}
    for part in PARTS:
        path = os.path.join(split_dir, f"{name}.{part}.inter")
        if not os.path.isfile(path):
            raise SystemExit(f"recbole_run: missing {path}")
        with open(path, encoding="utf-8") as f:
            header = f.readline().rstrip("\r\n").split("\t")
            rows = sum(1 for line in f if line.strip())
        fields = [h.split(":")[0] for h in header]
        if fields[:2] != ["user_id", "item_id"] or header[:2] != ["user_id:token", "item_id:token"]:
            raise SystemExit(f"recbole_run: {path}: header must start with user_id:token<TAB>item_id:token, got {header}")
        if rows == 0:
            raise SystemExit(f"recbole_run: {path} has no interactions")
        info[part] = {"path": os.path.abspath(path), "header": header, "rows": rows}
    return info


def recbole_config(args, data_path: str, work: str) -> dict:
    config = {
        # data: the three pre-split files, as they are
        "data_path": data_path,
        "benchmark_filename": list(PARTS),
        "field_separator": "\t",
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "load_col": {"inter": ["user_id", "item_id"]},
        "threshold": None,
        "rm_dup_inter": None,
        "val_interval": None,
        "filter_inter_by_user_or_item": False,
        "user_inter_num_interval": None,
        "item_inter_num_interval": None,
        # no caches: a fresh folder per run, nothing saved for reuse
        "checkpoint_dir": os.path.join(work, "saved"),
        "save_dataset": False,
        "dataset_save_path": None,
        "save_dataloaders": False,
        "dataloaders_save_path": None,
        # evaluation: full ranking, early stopping on NDCG@10
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO", "mode": "full"},
        "metrics": RECBOLE_METRICS,
        "topk": args.topk,
        "valid_metric": "NDCG@10",
        "repeatable": False,
        # environment
        "use_gpu": False,
        "gpu_id": "",
        "seed": args.seed,
        "reproducibility": True,
        "show_progress": False,
        "log_wandb": False,
        "worker": 0,
        "state": "WARNING" if args.quiet else "INFO",
    }
    if args.epochs is not None:
        config["epochs"] = args.epochs
    return config


def run(args) -> dict:
    files = check_files(args.split_dir, args.dataset)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    work = tempfile.mkdtemp(prefix="recbole-run-")
    old_cwd = os.getcwd()
    out_path = os.path.abspath(args.out)
    try:
        data_path = os.path.join(work, "data")
        folder = os.path.join(data_path, INTERNAL_NAME)
        os.makedirs(folder)
        for part in PARTS:
            os.symlink(files[part]["path"], os.path.join(folder, f"{INTERNAL_NAME}.{part}.inter"))
        os.chdir(work)  # RecBole writes ./log and ./log_tensorboard
        load_start = os.getloadavg()[0]
        # RecBole 1.2.1 reloads its best checkpoint with a plain torch.load; torch >= 2.6 defaults to
        # weights_only=True, which refuses RecBole's checkpoint (it pickles the config). The file is
        # the one this run just wrote into its own temp folder.
        os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
        t_start = time.perf_counter()

        import recbole
        from recbole.config import Config
        from recbole.data import create_dataset, data_preparation
        from recbole.utils import get_model, get_trainer, init_logger, init_seed

        config = Config(model=args.model, dataset=INTERNAL_NAME, config_dict=recbole_config(args, data_path, work))
        init_seed(config["seed"], config["reproducibility"])
        init_logger(config)
        logger = logging.getLogger()
        logger.info(config)
        dataset = create_dataset(config)
        logger.info(dataset)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        counts = {
            "users": dataset.user_num - 1,  # RecBole counts a padding id 0
            "items": dataset.item_num - 1,
            "interactions": {part: len(d._dataset) for part, d in zip(PARTS, (train_data, valid_data, test_data))},
        }
        for part in PARTS:
            if counts["interactions"][part] != files[part]["rows"]:
                raise SystemExit(
                    f"recbole_run: RecBole kept {counts['interactions'][part]} of the {files[part]['rows']} rows of "
                    f"{files[part]['path']}"
                )

        init_seed(config["seed"], config["reproducibility"])
        model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
        logger.info(model)
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        t_fit = time.perf_counter()
        _, valid_result = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
        test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
        t_end = time.perf_counter()
        epochs_trained = len(trainer.train_loss_dict)
        import torch

        machine = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                   "loadavg_1min_start": round(load_start, 2), "loadavg_1min_end": round(os.getloadavg()[0], 2)}
        result = {
            "model": args.model,
            "seed": args.seed,
            "dataset": args.dataset,
            "valid": {k: float(v) for k, v in (valid_result or {}).items()},
            "test": {k: float(v) for k, v in test_result.items()},
            "seconds": round(t_end - t_fit, 3),
            "seconds_total": round(t_end - t_start, 3),
            "epochs_trained": epochs_trained,
            # eval_step is 1 by default: cur_step evaluations since the best one
            "best_epoch": epochs_trained - trainer.cur_step if config["eval_step"] == 1 else None,
            "counts": counts,
            "recbole_version": recbole.__version__,
            "torch_version": torch.__version__,
            # seconds are wall time: other processes on the machine slow them (see the load averages)
            "machine": machine,
            "settings": {
                "epochs": config["epochs"],
                "stopping_step": config["stopping_step"],
                "valid_metric": config["valid_metric"],
                "topk": list(config["topk"]),
                "benchmark_filename": list(config["benchmark_filename"]),
                # eval_args.split is unused with benchmark files (RecBole's build() returns them as they are)
                "eval_args": {k: v for k, v in config["eval_args"].items() if k != "split"},
                "learning_rate": config["learning_rate"],
                "train_batch_size": config["train_batch_size"],
                "device": str(config["device"]),
                "split_dir": os.path.abspath(args.split_dir),
            },
        }
    finally:
        os.chdir(old_cwd)
        logging.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2, sort_keys=False)
        f.write("\n")
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    # a kill (SIGTERM) unwinds like an exception, so run()'s finally removes the temp folder
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    t = result["test"]
    print(
        f"{result['model']} seed {result['seed']}: test ndcg@10 {t['ndcg@10']:.4f} recall@10 {t['recall@10']:.4f} "
        f"mrr@10 {t['mrr@10']:.4f}; {result['epochs_trained']} epochs (best {result['best_epoch']}), "
        f"{result['seconds']:.1f}s -> {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
