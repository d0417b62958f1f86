"""The planner's measuring tools on real tensors and a real model."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tunesmith.planning.memory import tensor_bytes
from tunesmith.units import parse_size


def test_sizes_read_as_users_write_them():
    assert parse_size("8GB") == 8 * 10**9
    assert parse_size("1.5GiB") == int(1.5 * 2**30)
    assert parse_size("800 MB") == 800 * 10**6
    assert parse_size("2g") == 2 * 2**30
    with pytest.raises(ValueError, match="write e.g. 8GB"):
        parse_size("lots")


def test_weights_count_shared_storage_once():
    emb = torch.nn.Embedding(100, 16)
    head = torch.nn.Linear(16, 100, bias=False)
    head.weight = emb.weight  # tied, as in most language models
    model = torch.nn.ModuleDict({"emb": emb, "head": head})
    assert tensor_bytes(model) == 100 * 16 * 4


@pytest.mark.parametrize("earlier_peak_mib", [0, 600])
def test_a_large_allocation_shows_as_a_rise_in_resident_memory(earlier_peak_mib):
    # A fresh process; with an earlier, higher peak the rise can only be sampled while it happens.
    code = f"""
import torch
from tunesmith.planning.memory import peak_increment
earlier = torch.ones({earlier_peak_mib} * 2**18)
del earlier
size = 256 * 2**20
def allocate():
    block = torch.ones(size // 4)  # touched, so resident
    block.add_(1)
print(peak_increment(allocate, torch.device("cpu")) / size)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert 0.95 <= float(proc.stdout) <= 1.2
