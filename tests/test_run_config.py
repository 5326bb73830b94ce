"""The run's configuration: the sweep's settings live under `sweep:`, and their old top-level names
(`workers=2`, as command lines and scripts written before the move say) still mean them."""

from __future__ import annotations

import pytest

from vcmbench.config import compose_config
from vcmbench.run_config import moved_overrides
from vcmbench.settings import RunSettings

pytestmark = pytest.mark.timeout(60)


def test_old_names_are_rewritten_to_the_sweep_node_with_one_note_each():
    notes: list[str] = []
    got = moved_overrides(
        ["workers=2", "+threads=3", "~progress", "repair=true", "codec=raw", "dataset.workers=4", "workers_x=1"],
        warn=notes.append,
    )
    assert got == [
        "sweep.workers=2",
        "+sweep.threads=3",
        "~sweep.progress",
        "sweep.repair=true",
        "codec=raw",
        "dataset.workers=4",
        "workers_x=1",
    ]
    assert len(notes) == 4 and "workers= is now sweep.workers=" in notes[0]


def test_old_and_new_names_give_the_same_settings():
    new = RunSettings.from_config(compose_config("config", ["sweep.workers=3", "sweep.threads=2", "sweep.repair=true"]))
    old = RunSettings.from_config(compose_config("config", ["workers=3", "threads=2", "repair=true"]))
    assert new == old and (new.workers, new.threads, new.repair) == (3, 2, True)


def test_the_sweep_settings_are_not_top_level_any_more():
    cfg = compose_config("config", [])
    assert set(cfg.sweep) == {"workers", "threads", "progress", "repair"}
    assert not {"workers", "threads", "progress", "repair"} & set(cfg)
