"""Small input files (genotypes, user lists) are read bounded: a device, a FIFO or a file larger
than ``MAX_SMALL_FILE_BYTES`` is one clear error, never a read without end."""
from __future__ import annotations

import os

import pytest

from nasp import NaspError
from nasp.cnn.genotypes import load_genotype as load_cnn_genotype
from nasp.data import MAX_SMALL_FILE_BYTES, read_small_file
from nasp.rnn.genotypes import load_genotype as load_rnn_genotype
from sif.pipeline import read_user_list

READERS = {
    "cnn genotype": load_cnn_genotype,
    "rnn genotype": load_rnn_genotype,
    "user list": read_user_list,
}


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
def test_devices_fifos_and_huge_files_are_refused(tmp_path, reader):
    with pytest.raises(NaspError, match=r"/dev/zero: a device, not a regular file"):
        reader("/dev/zero")
    fifo = tmp_path / "genotype.json"
    os.mkfifo(fifo)  # nothing writes to it: opening it would block forever
    with pytest.raises(NaspError, match=r"genotype.json: a FIFO, not a regular file"):
        reader(str(fifo))
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as fh:
        fh.truncate(MAX_SMALL_FILE_BYTES + 1)  # sparse: no disk used
    with pytest.raises(NaspError, match=rf"huge.json: {MAX_SMALL_FILE_BYTES + 1:,} bytes, more than the {MAX_SMALL_FILE_BYTES:,}"):
        reader(str(huge))


def test_a_small_file_is_read_whole(tmp_path):
    p = tmp_path / "users.txt"
    p.write_text("1\n# a comment\n\n196\n")
    assert read_small_file(p, "--users") == p.read_bytes()
    assert read_user_list(p) == ["1", "196"]
    with pytest.raises(NaspError, match=r"--users .*users.txt: [\d,]+ bytes, more than the 4 "):
        read_small_file(p, "--users", limit=4)
