"""`determinism`: exact (every number the same on any machine) or loose (float kernels, faster).

Float network arithmetic depends on the order of its additions, and torch's kernels pick that
order by thread count, instruction set, CPU vendor, BLAS library and device. Measured: an Intel
Xeon (AVX-512/AMX) and an AMD EPYC gave different ci_frcnn features for the same image, and the
MPEG anchor's mAP moved by up to 1.46 points at one rate point; pinning oneDNN off, ATen and MKL
to AVX2 and the thread count (the old `strict`) held on one vendor and not on the other.

`exact` runs every torch operation of the front, the codecs and the back under
`vcmbench.exact.ExactArithmetic`: convolutions and matrix products on power-of-two fixed-point
grids with exact float64 accumulation, transcendental functions and sums as fixed sequences of
correctly rounded operations, stable sorts; anything else on floats is refused by name. Its
results cannot depend on the order of additions, so thread count, vendor and instruction set
cannot change a feature, a byte or a detection. `loose` is torch as it comes: its run.json and
report say that its numbers are machine-dependent.

This module imports torch only inside functions: settings import it before torch is needed.
"""

from __future__ import annotations

import contextlib
import os
import platform

from vcmbench.errors import ConfigError

MODES = ("exact", "loose")
#: earlier names: `strict` (thread-stable on one machine) is now exact, `off` is loose
ALIASES = {"strict": "exact", "off": "loose"}
DEFAULT = "exact"


def check_mode(value: object) -> str:
    mode = str(value).strip().lower()
    mode = ALIASES.get(mode, mode)
    if mode not in MODES:
        raise ConfigError(
            f"determinism={value!r}: choose exact (the same features, bytes and metrics on any machine "
            "and thread count; the default) or loose (torch's float kernels: faster, machine-dependent)"
        )
    return mode


def arithmetic(mode: str) -> contextlib.AbstractContextManager:
    """The context the run's network and codec work happens in: ExactArithmetic for exact."""
    if mode != "exact":
        return contextlib.nullcontext()
    from vcmbench.exact import ExactArithmetic

    return ExactArithmetic()


def cpu_model() -> str:
    """The CPU's model name (as lscpu gives it), for run.json: what a loose run's numbers depend on."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(mode: str) -> dict[str, object]:
    """What the numbers depend on, for run.json: the mode, whether they are machine-independent,
    and the machine (CPU model, torch's kernel capability, threads, oneDNN)."""
    import torch

    return {
        "determinism": mode,
        "machine_independent": mode == "exact",
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "mkldnn_enabled": bool(torch.backends.mkldnn.enabled),
    }
