"""Resuming a training run (the detector's, a learned codec's) from its saved state.

Both trainers save their state with a `config_key` (the run's config without the keys that
do not change the result) and a `step`. A state written under another configuration is not
resumed: its steps would belong to a different run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def matching_state(path: Path, config_key: str, resume: bool) -> dict | None:
    """The saved state at `path` when resuming is on and it was written by this configuration;
    else None (saying so when a state of another configuration is set aside)."""
    if not resume or not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("config_key") != config_key:
        print(f"{path} belongs to another configuration: starting afresh", file=sys.stderr)
        return None
    print(f"resuming from {path} at step {int(state['step'])}", file=sys.stderr)
    return state
