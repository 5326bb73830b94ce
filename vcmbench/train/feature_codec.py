"""`vcmbench train`: the trainer a codec's yaml calls for.

The hybrid codec trains one pair of networks for every QP (no quality, no lambda:
`vcmbench.train.hybrid`); a learned codec one rate point at a time (`vcmbench.train.codec`).
"""

from __future__ import annotations

from omegaconf import DictConfig

from vcmbench.train.codec import train_codec
from vcmbench.train.hybrid import is_hybrid, train_hybrid


def train_feature_codec(cfg: DictConfig, out_dir: str) -> dict:
    """Train what `cfg.codec` (one codec) names; the trainer's info dict."""
    selected = cfg.get("codec")
    if selected and len(selected) == 1 and is_hybrid(next(iter(selected.values()))):
        return train_hybrid(cfg, out_dir)
    return train_codec(cfg, out_dir)
