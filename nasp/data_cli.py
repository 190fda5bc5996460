"""``nasp data``: list the known data sets and fetch them into the data root."""
from __future__ import annotations

import json

import click

from .commands import data_dir_option
from .data import DATASETS, data_root, dataset_path, fetch, is_present


@click.group()
def data() -> None:
    """Known data sets: where they live and how to get them."""


@data.command("list")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def list_(data_dir, as_json: bool) -> None:
    """Every known data set name, whether it is present under the data root, and its path."""
    rows = [
        {"name": n, "present": is_present(n, data_dir), "path": str(dataset_path(n, data_dir)),
         "url": DATASETS.get(n).url, "description": DATASETS.get(n).description}
        for n in DATASETS.names()
    ]
    if as_json:
        click.echo(json.dumps({"data_root": str(data_root(data_dir)), "datasets": rows}))
        return
    click.echo(f"data root: {data_root(data_dir)}")
    for r in rows:
        click.echo(f"  {'x' if r['present'] else ' '} {r['name']:16s} {r['description']}")


@data.command("fetch")
@click.argument("name")
@data_dir_option
def fetch_(name: str, data_dir) -> None:
    """Download NAME into the data root (checksum-checked) unless it is already there."""
    click.echo(str(fetch(name, data_dir)))
