"""What the benchmarks print about the machine: the CPU's model and the instructions that decide
which precision and runtime pay off (AVX2, AVX512-BF16, VNNI, AMX)."""

from __future__ import annotations

import os
import platform

FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


def cpu_facts() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "cpu_flags": [flag for flag in FLAGS if flag in flags]}
