"""What this CPU can do natively, detected (never assumed): the instruction sets that decide whether bf16
arithmetic is fast here.

bf16 matrix multiplies are fast only where the CPU has bf16 dot-product instructions: AVX512-BF16 (AMD Zen 4
and later, Intel Cooper Lake and Sapphire Rapids) or AMX-BF16 (Intel Sapphire Rapids and later) on x86, the
BF16 extension on Arm (Neoverse V1/N2, Graviton 3 and later). Without them oneDNN emulates bf16 by converting
to fp32 and back, many times slower than plain fp32. Measured on a 2-core AMD EPYC with AVX512-BF16 and no
AMX: a 2048x2048 matmul runs at 415 GFLOP/s in bf16 against 184 in fp32 (bench/profile_step.py's peak).

The flags come from torch's own cpuinfo (torch._C._cpu._get_cpu_capability, the library oneDNN dispatches
by), else from /proc/cpuinfo; where neither answers, nothing is claimed.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# x86 flags as torch's cpuinfo names them, then as /proc/cpuinfo does.
_X86_BF16 = {"avx512_bf16": "avx512_bf16", "amx_bf16": "amx_bf16"}
_SHOWN = ("avx2", "avx512_f", "avx512_bf16", "amx_bf16", "amx_int8", "bf16")


@dataclass(frozen=True)
class CpuFeatures:
    name: str
    flags: frozenset[str]
    """Instruction-set flags that matter here, named as torch's cpuinfo names them (avx512_f, avx512_bf16,
    amx_bf16, amx_int8; `bf16` for Arm's BF16 extension)."""

    @property
    def native_bf16(self) -> bool:
        """Whether bf16 matmuls run on bf16 instructions here (AVX512-BF16, AMX-BF16 or Arm BF16)."""
        return bool(self.flags & {"avx512_bf16", "amx_bf16", "bf16"})

    def describe(self) -> str:
        shown = [f for f in _SHOWN if f in self.flags] or ["none of avx2/avx512/amx/bf16"]
        native = "native bf16" if self.native_bf16 else "no native bf16"
        return f"{self.name} ({', '.join(shown)}; {native})"


@cache
def cpu_features() -> CpuFeatures:
    """This machine's CPU, read once."""
    flags: set[str] = set()
    name = platform.processor() or platform.machine()
    try:
        import torch

        caps = torch._C._cpu._get_cpu_capability()
        flags |= {k for k, v in caps.items() if v is True}
        name = str(caps.get("cpu_name") or name)
    except (ImportError, AttributeError, RuntimeError):
        pass
    proc = _proc_flags()
    flags |= {_X86_BF16.get(f, f) for f in proc}
    if "avx512f" in proc:
        flags.add("avx512_f")
    return CpuFeatures(name=name, flags=frozenset(flags & set(_SHOWN)))


def _proc_flags() -> set[str]:
    """The flags (x86) or Features (Arm) line of /proc/cpuinfo; empty where there is no such file."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"flags", "Features"}:
            return set(value.split())
    return set()
