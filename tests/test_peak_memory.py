"""``nasp.devices.peak_memory_mb``: one peak-memory reading for every domain, in MiB on Linux and macOS."""
from __future__ import annotations

import types

import torch

from nasp import devices


def _fake_rusage(monkeypatch, maxrss: int, platform: str) -> None:
    monkeypatch.setattr(devices.resource, "getrusage", lambda who: types.SimpleNamespace(ru_maxrss=maxrss))
    monkeypatch.setattr(devices.sys, "platform", platform)


def test_linux_maxrss_is_kib(monkeypatch):
    _fake_rusage(monkeypatch, 512 * 1024, "linux")
    assert devices.peak_memory_mb(torch.device("cpu")) == 512.0


def test_macos_maxrss_is_bytes(monkeypatch):
    _fake_rusage(monkeypatch, 512 * 2**20, "darwin")
    assert devices.peak_memory_mb(torch.device("cpu")) == 512.0


def test_domains_use_the_shared_reading():
    from nasp.cnn import search as cnn_search, train as cnn_train
    from nasp.rnn import search as rnn_search

    for module in (cnn_search, cnn_train, rnn_search):
        assert module.peak_memory_mb is devices.peak_memory_mb
