"""Three-way (user, item, context) data made from a ratings file with timestamps:
``nasp data prepare ml-100k-dow`` (and ``ml-100k-hour``).

The context of a rating is a function of its Unix timestamp, taken in UTC: the day of the week
(``Mon`` ... ``Sun``) or the six-hour bucket of the time of day (``h00-05`` ... ``h18-23``).
The file written is a RecBole atomic file, ``user_id:token item_id:token context:token
rating:float``, one row per rating, in the order of the source file; what ``--ways 3 --task
rating`` reads. Nothing of MovieLens is shipped: the file is made from the user's own copy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from nasp.data import PreparedDataset, register_prepared
from nasp.errors import NaspError
from nasp.runs import write_bytes_atomic

from .readers import read_ratings

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
HEADER = ("user_id:token", "item_id:token", "context:token", "rating:float")


def day_of_week(seconds: np.ndarray) -> np.ndarray:
    """``Mon`` ... ``Sun`` of Unix timestamps (UTC)."""
    return np.array(DAYS, dtype=object)[pd.to_datetime(seconds, unit="s", utc=True).day_of_week.to_numpy()]


def hour_bucket(seconds: np.ndarray) -> np.ndarray:
    """``h00-05``, ``h06-11``, ``h12-17`` or ``h18-23`` of Unix timestamps (UTC)."""
    labels = np.array([f"h{h:02d}-{h + 5:02d}" for h in range(0, 24, 6)], dtype=object)
    return labels[pd.to_datetime(seconds, unit="s", utc=True).hour.to_numpy() // 6]


CONTEXTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"dow": day_of_week, "hour": hour_bucket}


def write_context_file(source: Path, out: Path, context: str) -> int:
    """Write ``out`` (see the module docstring) from the ratings file ``source``; returns its rows."""
    table = read_ratings(source)
    if table.timestamps is None:
        raise NaspError(f"{source}: no timestamp column; the context comes from the time of each rating")
    if not table.has_ratings:
        raise NaspError(f"{source}: no rating column; --task rating needs one")
    contexts = CONTEXTS[context](np.asarray(table.timestamps, dtype=np.int64))
    lines = ["\t".join(HEADER)]
    lines += [f"{u}\t{i}\t{c}\t{r:g}" for u, i, c, r in zip(table.users, table.items, contexts, table.ratings.tolist())]
    write_bytes_atomic(out, ("\n".join(lines) + "\n").encode())
    return len(table.users)


register_prepared(PreparedDataset(
    "ml-100k-dow", "ml-100k", "ml-100k-dow", "ml-100k-dow.inter",
    "MovieLens 100K as (user, item, day of week of the rating, rating): --ways 3 --task rating",
    lambda source, out: write_context_file(source, out, "dow")))
register_prepared(PreparedDataset(
    "ml-100k-hour", "ml-100k", "ml-100k-hour", "ml-100k-hour.inter",
    "MovieLens 100K as (user, item, six-hour bucket of the rating's time, rating): --ways 3 --task rating",
    lambda source, out: write_context_file(source, out, "hour")))
