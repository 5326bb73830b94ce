"""`determinism: strict`: the same config gives bit-identical features, bytes and mAP whatever
the thread count, and on any x86-64 machine with AVX2.

Measured here (torch 2.14.1 CPU, AMD EPYC with AVX-512, ci_frcnn's front on one 256x256 scene,
sha256 of p2..p5): the features differ between 1 and 2 intra-op threads, and between oneDNN's
AVX-512 and AVX2 kernels (`DNNL_MAX_CPU_ISA`). With oneDNN off (`torch.backends.mkldnn.enabled =
False`, convolutions through ATen and MKL's GEMM) they are the same for 1 and 2 threads and for
ATen's AVX-512 and AVX2 kernels; only ATen's scalar kernels (`ATEN_CPU_CAPABILITY=default`)
differ. So the cause is oneDNN's convolution: its kernels split the reduction by thread count and
instruction set, and a one-ulp change moves the per-image quantisation range and with it every
sample an external encoder sees.

Strict therefore turns oneDNN off, caps ATen at AVX2 and pins MKL's code path to AVX2
(`MKL_CBWR`, its conditional numerical reproducibility), and switches torch's deterministic
algorithms on. The environment variables are read when torch (and MKL) load, so `vcmbench run
determinism=strict` sets them before anything imports torch; worker processes inherit them.

This module imports no torch at load: the command line uses `STRICT_ENV` before torch exists.
"""

from __future__ import annotations

import os

from vcmbench.errors import ConfigError

MODES = ("off", "strict")
#: read when torch and MKL load: ATen kernels at AVX2, oneDNN capped too, MKL's AVX2 code path
STRICT_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}


def check_mode(value: object) -> str:
    mode = str(value).strip().lower()
    if mode not in MODES:
        raise ConfigError(f"determinism={value!r}: choose off (fastest; features depend on threads and CPU) or "
                          "strict (bit-identical features on any AVX2 machine, any thread count)")
    return mode


def wants_strict(argv: list[str]) -> bool:
    """Whether a `vcmbench run` command line asks for strict determinism (checked before torch loads)."""
    return any(a.replace(" ", "") in ("determinism=strict", "+determinism=strict") for a in argv)


def export_strict_environment() -> None:
    """Set STRICT_ENV in this process (and so in every process it starts), before torch loads."""
    for key, value in STRICT_ENV.items():
        os.environ[key] = value


def apply(strict: bool) -> None:
    """Put this process's torch in the run's mode; strict fails if torch loaded without STRICT_ENV."""
    import torch

    if not strict:
        return
    missing = {k: v for k, v in STRICT_ENV.items() if os.environ.get(k) != v}
    if missing or torch.backends.cpu.get_cpu_capability() not in ("AVX2", "DEFAULT"):
        setting = " ".join(f"{k}={v}" for k, v in STRICT_ENV.items())
        raise ConfigError(f"determinism=strict: torch was loaded without {setting}; give determinism=strict on "
                          f"the `vcmbench run` command line (it sets them before torch loads) or export {setting}")
    torch.backends.mkldnn.enabled = False
    torch.use_deterministic_algorithms(True)


def environment() -> dict[str, object]:
    """What the features depend on, for run.json: CPU capability, threads, the strict settings."""
    import torch

    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "mkldnn_enabled": bool(torch.backends.mkldnn.enabled),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        **{k: os.environ.get(k, "") for k in STRICT_ENV},
    }
