"""The torch threads a codec may use for its own work in this process: a cap set by the sweep.

A learned codec encodes on a fixed number of torch threads (2), so that in loose arithmetic its
bytes never depend on the caller's setting. In a sweep whose workers already fill the cores, those
extra threads oversubscribe them: OpenMP threads spin while they wait for a core, and a learned
encode measured 3-10x slower beside another worker than alone. Under determinism=exact no number
depends on the thread count, so there each worker caps its codecs at its own `threads`; under
loose the codecs keep their fixed counts, because their bytes would otherwise depend on `workers`.
"""

from __future__ import annotations

import contextlib

import torch

_CAP: list[int | None] = [None]


def limit(threads: int | None) -> None:
    """Cap every codec's own thread count in this process at `threads` (None: no cap)."""
    _CAP[0] = threads


def capped(threads: int | None) -> int | None:
    """A codec's thread count under this process's cap (None stays None: the caller's setting)."""
    cap = _CAP[0]
    return threads if threads is None or cap is None else min(threads, cap)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block on `n` torch threads (capped by the worker's budget), then restore the caller's:
    codecs fix their own count so their numbers never depend on the caller's."""
    n = capped(n)
    if not n or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
