"""``nasp data``: list the known data sets, fetch them into the data root, prepare derived ones."""
from __future__ import annotations

import json

import click

from .options import data_dir_option
from .data import BUNDLED, DATASETS, PREPARED, data_root, dataset_path, fetch, is_present, prepare, prepared_path


@click.group()
def data() -> None:
    """Known data sets: where they live and how to get (or prepare) them."""


@data.command("list")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def list_(data_dir, as_json: bool) -> None:
    """Every known data set name, whether it is present under the data root (or bundled with a
    library, nothing to fetch; or made by 'nasp data prepare'), and what it is."""
    rows = [
        {"name": n, "present": is_present(n, data_dir), "bundled": False, "path": str(dataset_path(n, data_dir)),
         "url": DATASETS.get(n).url, "description": DATASETS.get(n).description}
        for n in DATASETS.names()
    ]
    rows += [
        {"name": n, "present": True, "bundled": True, "path": None, "url": None,
         "description": f"{BUNDLED.get(n).description} (ships with {BUNDLED.get(n).provider})"}
        for n in BUNDLED.names()
    ]
    rows += [
        {"name": n, "present": prepared_path(n, data_dir).is_file(), "bundled": False, "prepared": True,
         "path": str(prepared_path(n, data_dir)), "url": None,
         "description": f"{PREPARED.get(n).description} (nasp data prepare {n})"}
        for n in PREPARED.names()
    ]
    if as_json:
        click.echo(json.dumps({"data_root": str(data_root(data_dir)), "datasets": rows}))
        return
    click.echo(f"data root: {data_root(data_dir)}  (present: the files are there; missing: 'nasp data fetch NAME' downloads them)")
    click.echo(f"  {'name':16s} {'status':8s} description")
    for r in rows:
        status = "bundled" if r["bundled"] else "present" if r["present"] else "missing"
        click.echo(f"  {r['name']:16s} {status:8s} {r['description']}")


@data.command("fetch")
@click.argument("name")
@data_dir_option
def fetch_(name: str, data_dir) -> None:
    """Download NAME into the data root (checksum-checked) unless it is already there.

    An archive already in the data root whose checksum differs is refused, never deleted."""
    if name in BUNDLED:
        click.echo(f"{name}: ships with {BUNDLED.get(name).provider}, nothing to fetch")
        return
    click.echo(str(fetch(name, data_dir)))


@data.command("prepare")
@click.argument("name")
@data_dir_option
@click.option("--source", type=click.Path(dir_okay=False), default=None,
              help="The source file to read [default: the known data set it is made from, under the data root, "
                   "fetched when missing].")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to write [default: its place under the data root, where --data NAME finds it].")
def prepare_(name: str, data_dir, source, out) -> None:
    """Make data set NAME from a known one on this machine (nothing of it is shipped), and print its path.

    \b
    ml-100k-dow   (user, item, day of week of the rating, rating) from ml-100k's u.data
    ml-100k-hour  (user, item, six-hour bucket of the rating's time of day, rating)
    Both are RecBole atomic files (user_id:token item_id:token context:token rating:float),
    the context taken from the rating's Unix timestamp in UTC; read them with
    'nasp sif ... --ways 3 --task rating --data NAME'."""
    path, rows = prepare(name, data_dir, source, out)
    click.echo(f"{path}\t{rows} rows", err=True)
    click.echo(str(path))
