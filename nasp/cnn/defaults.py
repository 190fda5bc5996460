"""Size-dependent defaults of ``nasp cnn search`` / ``nasp cnn train``, per data set.

An option the user leaves out takes the value of its data set's profile: ``digits`` (8x8
grey images: a network that trains in minutes on a CPU, the settings of docs/cnn.md) or the
paper's (``cifar10``: DARTS' CIFAR-10 settings, also used for CIFAR folders and archives;
``imagenet``: image folders). The commands build their config (``nasp.cnn.config``) with these
values filled in, and ``config.json`` records the values used.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..registry import Registry

#: ``--option`` defaults of ``cnn search`` per profile
SEARCH: Registry[dict[str, Any]] = Registry("cnn search defaults")
SEARCH.register("cifar10")({"epochs": 50, "batch_size": 64, "layers": 8, "channels": 16, "arch_lr": 3e-4})
SEARCH.register("imagenet")({"epochs": 50, "batch_size": 64, "layers": 8, "channels": 16, "arch_lr": 3e-4})
SEARCH.register("digits")({"epochs": 10, "batch_size": 32, "layers": 5, "channels": 8, "arch_lr": 3e-3})

#: ``--option`` defaults of ``cnn train`` per profile
TRAIN: Registry[dict[str, Any]] = Registry("cnn train defaults")
TRAIN.register("cifar10")({"epochs": 600, "batch_size": 96, "layers": 20, "channels": 36, "drop_path": 0.2})
TRAIN.register("imagenet")({"epochs": 600, "batch_size": 96, "layers": 14, "channels": 48, "drop_path": 0.2})
TRAIN.register("digits")({"epochs": 30, "batch_size": 32, "layers": 6, "channels": 16, "drop_path": 0.1})

#: data sets with a profile of their own; every other one follows its network kind
OWN_PROFILES = ("digits",)


def profile(data_name: str, kind: str) -> str:
    """The defaults profile: ``digits`` for digits, else by network kind (``imagenet``, or
    ``cifar10`` for the CIFAR network)."""
    if data_name in OWN_PROFILES:
        return data_name
    return "imagenet" if kind == "imagenet" else "cifar10"


def resolve(opts: Mapping[str, Any], table: Mapping[str, Any]) -> dict[str, Any]:
    """The values of ``table`` for the options left out (None or absent) in ``opts``; ``opts``
    stays as it is (``CNNSearchConfig.from_options`` / ``CNNTrainConfig.from_options`` merge them)."""
    return {key: value for key, value in table.items() if opts.get(key) is None}


#: how ``--help`` names a profile
SHOWN = {"imagenet": "image folders"}


def help_text(table: Registry[dict[str, Any]], key: str, what: str = "") -> str:
    """``what (default: 8 on cifar10, 5 on digits, ...)`` from a defaults table."""
    values: dict[Any, list[str]] = {}
    for name in table:
        values.setdefault(table.get(name)[key], []).append(SHOWN.get(name, name))
    parts = ", ".join(f"{value:g} on {' and '.join(names)}" if isinstance(value, float) else f"{value} on {' and '.join(names)}"
                      for value, names in values.items())
    return f"{what} (default: {parts})."
