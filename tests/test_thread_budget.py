"""A sweep's worker caps its codecs' own threads (exact mode), so they cannot oversubscribe the cores."""

from __future__ import annotations

import pytest
import torch

from vcmbench import thread_budget
from vcmbench.codecs.learned.codec import _threads


@pytest.fixture
def three_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield
    thread_budget.limit(None)
    torch.set_num_threads(before)


def test_a_cap_lowers_a_codecs_own_threads_and_never_raises_them(three_threads):
    with _threads(2):
        assert torch.get_num_threads() == 2  # no cap: the codec's fixed count
    thread_budget.limit(1)
    with _threads(2):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 3  # the caller's setting is back
    thread_budget.limit(4)
    with _threads(2):
        assert torch.get_num_threads() == 2
    assert thread_budget.capped(None) is None  # "the caller's setting" stays that
