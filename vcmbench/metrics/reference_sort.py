"""`np.argsort(values)` as the reference evaluators ran it, the same on every CPU.

MPEG's OpenImages evaluator (the TensorFlow Object Detection API vendored by CompressAI-Vision)
orders a class's detections by `np.argsort(scores)[::-1]`: numpy's default, unstable sort. Where
scores tie, the order of the tied detections decides which of them takes an object, so it moves
the mAP. numpy picks that sort's code by the CPU: on a CPU with AVX-512, numpy >= 1.25 argsorts
64-bit values with x86-simd-sort, which orders ties differently from numpy's own introsort, used
everywhere else. The same detections then score differently on an Intel Xeon and on an AVX2 EPYC
(measured: 4 of the 60 generated cases of tests/oid_cases.py moved by up to 4.4 points).

`reference_argsort` is numpy's own introsort (numpy/_core/src/npysort/quicksort.cpp,
`aquicksort_`: median-of-3 quicksort, insertion sort up to 16 elements, heapsort past the depth
limit) written out, so ties are ordered as the baseline code orders them on any machine. Without
ties every correct sort gives the same order, and numpy's stable sort is used.
"""

from __future__ import annotations

import numpy as np

SMALL_QUICKSORT = 15
"""Partitions of at most this many + 1 elements are insertion-sorted (numpy's SMALL_QUICKSORT)."""


def reference_argsort(values: np.ndarray) -> np.ndarray:
    """Indices that sort `values` ascending, ties in the order of numpy's baseline introsort."""
    v = np.asarray(values).ravel()
    if np.unique(v).size == v.size and not np.isnan(v).any():
        return np.argsort(v, kind="stable")
    return np.asarray(_introsort(v.tolist()), dtype=np.intp)


def _less(a: float, b: float) -> bool:
    """numpy's float order: NaN after every number."""
    return a < b or (b != b and a == a)


def _introsort(v: list) -> list[int]:
    n = len(v)
    tosort = list(range(n))
    if n < 2:
        return tosort
    stack: list[tuple[int, int, int]] = []
    pl, pr = 0, n - 1
    cdepth = (n.bit_length() - 1) * 2
    while True:
        if cdepth < 0:
            _heapsort(v, tosort, pl, pr - pl + 1)
        else:
            while pr - pl > SMALL_QUICKSORT:
                pm = pl + ((pr - pl) >> 1)
                if _less(v[tosort[pm]], v[tosort[pl]]):
                    tosort[pm], tosort[pl] = tosort[pl], tosort[pm]
                if _less(v[tosort[pr]], v[tosort[pm]]):
                    tosort[pr], tosort[pm] = tosort[pm], tosort[pr]
                if _less(v[tosort[pm]], v[tosort[pl]]):
                    tosort[pm], tosort[pl] = tosort[pl], tosort[pm]
                vp = v[tosort[pm]]
                pi, pj = pl, pr - 1
                tosort[pm], tosort[pj] = tosort[pj], tosort[pm]
                while True:
                    pi += 1
                    while _less(v[tosort[pi]], vp):
                        pi += 1
                    pj -= 1
                    while _less(vp, v[tosort[pj]]):
                        pj -= 1
                    if pi >= pj:
                        break
                    tosort[pi], tosort[pj] = tosort[pj], tosort[pi]
                pk = pr - 1
                tosort[pi], tosort[pk] = tosort[pk], tosort[pi]
                cdepth -= 1
                # the larger part waits on the stack, the smaller is sorted next
                if pi - pl < pr - pi:
                    stack.append((pi + 1, pr, cdepth))
                    pr = pi - 1
                else:
                    stack.append((pl, pi - 1, cdepth))
                    pl = pi + 1
            _insertion_sort(v, tosort, pl, pr)
        if not stack:
            return tosort
        pl, pr, cdepth = stack.pop()


def _insertion_sort(v: list, tosort: list[int], pl: int, pr: int) -> None:
    for pi in range(pl + 1, pr + 1):
        vi = tosort[pi]
        vp = v[vi]
        pj = pi
        while pj > pl and _less(vp, v[tosort[pj - 1]]):
            tosort[pj] = tosort[pj - 1]
            pj -= 1
        tosort[pj] = vi


def _heapsort(v: list, tosort: list[int], start: int, n: int) -> None:
    """numpy's aheapsort_ on tosort[start : start + n] (1-based heap indexing, as there)."""

    def a(i: int) -> int:
        return tosort[start + i - 1]

    def put(i: int, x: int) -> None:
        tosort[start + i - 1] = x

    def sift(i: int, tmp: int, size: int) -> None:
        j = i << 1
        while j <= size:
            if j < size and _less(v[a(j)], v[a(j + 1)]):
                j += 1
            if _less(v[tmp], v[a(j)]):
                put(i, a(j))
                i = j
                j += j
            else:
                break
        put(i, tmp)

    for first in range(n >> 1, 0, -1):
        sift(first, a(first), n)
    while n > 1:
        tmp = a(n)
        put(n, a(1))
        n -= 1
        sift(1, tmp, n)
