"""precision auto follows what this CPU runs natively, read from the machine, never assumed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tunesmith.hardware import CpuFeatures, cpu_features
from tunesmith.training.setup import mixed_precision, precision_warning


def proc_flags() -> set[str]:
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        pytest.skip("no /proc/cpuinfo here")
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"flags", "Features"}:
            return set(value.split())
    pytest.skip("no flags line in /proc/cpuinfo")


def test_native_bf16_agrees_with_the_kernel_flags():
    flags = proc_flags()
    native = bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    assert cpu_features().native_bf16 is native
    assert ("native bf16" in cpu_features().describe()) and (
        cpu_features().describe().endswith("; native bf16)") is native
    )


def test_auto_is_bf16_on_a_cpu_exactly_where_it_is_native():
    cpu = torch.device("cpu")
    assert mixed_precision("auto", cpu) == ("bf16" if cpu_features().native_bf16 else "no")
    assert mixed_precision("fp32", cpu) == "no" and mixed_precision("bf16", cpu) == "bf16"


def test_asking_for_bf16_on_a_cpu_that_emulates_it_is_warned_about_and_nothing_else_is():
    cpu = torch.device("cpu")
    warning = precision_warning("bf16", cpu)
    if cpu_features().native_bf16:
        assert warning is None
    else:
        assert warning is not None and "emulated" in warning and "precision auto" in warning
    assert precision_warning("auto", cpu) is None and precision_warning("fp32", cpu) is None
    assert precision_warning("bf16", torch.device("meta")) is None  # not a CPU: its own rules


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ({"avx2", "avx512_f"}, False),  # AVX-512 alone emulates bf16: slower than fp32
        ({"avx2", "avx512_f", "avx512_bf16"}, True),  # Zen 4, Cooper Lake
        ({"avx2", "avx512_f", "amx_bf16", "amx_int8"}, True),  # Sapphire Rapids
        ({"bf16"}, True),  # Arm Neoverse V1 / Graviton 3
        (set(), False),
    ],
)
def test_which_instruction_sets_count_as_native_bf16(flags, native):
    assert CpuFeatures("cpu", frozenset(flags)).native_bf16 is native
