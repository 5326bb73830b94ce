"""reference_argsort: numpy's baseline argsort, the same tie order on every CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vcmbench.metrics.reference_sort import reference_argsort

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]


def test_tied_values_are_ordered_as_numpys_own_introsort():
    # pinned from numpy's baseline sort (no AVX-512 dispatch): insertion sort and a partitioned case
    small = np.array([1.0, 0, 1, 0, 1, 0, 1, 0, 0, 1])
    assert reference_argsort(small).tolist() == [1, 3, 5, 7, 8, 0, 2, 4, 6, 9]
    big = np.array([0.5 * (i % 3) for i in range(20)])
    # numpy's AVX-512 sort gives [0, 3, 6, 9, 12, 15, 18, 7, 13, 10, 4, 1, ...] for these
    assert reference_argsort(big).tolist() == [0, 15, 12, 18, 6, 9, 3, 4, 7, 10, 13, 1, 16, 19, 8, 11, 2, 14, 17, 5]


def test_it_sorts_and_permutes():
    rng = np.random.default_rng(5)
    for n in (0, 1, 2, 17, 40, 300):
        v = rng.integers(0, 4, size=n) / 4.0
        order = reference_argsort(v)
        assert sorted(order.tolist()) == list(range(n))
        assert np.all(np.diff(v[order]) >= 0)


def test_it_equals_numpys_argsort_with_the_cpu_specific_sorts_switched_off():
    """numpy's own argsort, its AVX-512 code switched off where this CPU has it (NPY_DISABLE_CPU_FEATURES),
    on tie-heavy arrays of every size class: small (insertion sort) and partitioned."""
    script = textwrap.dedent(
        """
        import numpy as np
        from vcmbench.metrics.reference_sort import reference_argsort
        rng = np.random.default_rng(0)
        bad = 0
        for trial in range(400):
            n = int(rng.integers(0, 400))
            v = (rng.integers(0, max(2, n // 4), size=n) / 7).astype(np.float32 if trial % 2 else np.float64)
            bad += not np.array_equal(np.argsort(v), reference_argsort(v))
        print(bad)
        """
    )
    from numpy.core._multiarray_umath import __cpu_features__ as features

    avx512 = [f for f, on in features.items() if on and f.startswith("AVX512")]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if avx512:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(avx512)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0", out.stderr
