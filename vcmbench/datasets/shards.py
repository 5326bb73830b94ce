"""Shards: `dataset.shard=K/N` keeps the K-th of N disjoint, balanced parts of a dataset's items.

A sweep too big for one machine (5,000 OpenImages images x 6 QPs of VVC) is cut by items, not
only by config: each shard is an ordinary run over part of the items, in its own run folder,
resumable on its own, and `vcmbench merge` evaluates the union of their records once. The parts
depend on nothing but the items (never on the machine, the order of submission or N's other
parts' progress), so every shard of a sweep, wherever it runs, agrees on who does what.

Balanced by size: an item's size is its pixels (a sequence's: all its frames'), and items are
dealt largest first to the part with the fewest pixels so far (ties: the lower part), with ties
between items broken by id. Parts then differ by at most one item's size.
"""

from __future__ import annotations

import functools
import heapq

from omegaconf import DictConfig, OmegaConf

from vcmbench.settings import Shard, parse_shard

__all__ = ["SHARD_KEY", "Shard", "parse_shard", "partition", "select_shard", "shard_item_ids", "shardable"]

SHARD_KEY = "shard"


def select_shard(dataset, shard: Shard):
    """The dataset's view holding this shard's items only."""
    return dataset.subset(shard_item_ids(shard, dataset.records))


def shard_item_ids(shard: Shard, items) -> list[int]:
    """The shard's item ids, in the dataset's order."""
    return [item.image_id for item in partition(items, shard.count)[shard.index - 1]]


def item_size(item) -> int:
    """An item's weight in the balance: its original pixels (all frames' for a sequence)."""
    return int(item.pixels) if hasattr(item, "pixels") else int(item.height) * int(item.width)


def partition(items, count: int) -> list[list]:
    """`items` dealt into `count` parts balanced by size (largest first to the lightest part), each
    part in the items' own order."""
    order = sorted(range(len(items)), key=lambda i: (-item_size(items[i]), items[i].image_id))
    heap = [(0, part) for part in range(count)]
    owner = [0] * len(items)
    for i in order:
        load, part = heapq.heappop(heap)
        owner[i] = part
        heapq.heappush(heap, (load + item_size(items[i]), part))
    return [[item for i, item in enumerate(items) if owner[i] == part] for part in range(count)]


def shardable(build):
    """A dataset builder that also takes its yaml's `shard:`: the whole set is built, then cut, so
    `instantiate(cfg.dataset)` anywhere gives the items the config names."""

    @functools.wraps(build)
    def build_shard(*args, shard: object = None, **kwargs):
        dataset = build(*args, **kwargs)
        cut = parse_shard(shard)
        return dataset if cut is None else select_shard(dataset, cut)

    return build_shard


def instantiate_whole(node: DictConfig):
    """(the whole dataset of a config node, its shard or None): the runner codes the shard's items
    and keeps the whole set for what is the whole set's (the complexity pass's first image)."""
    from hydra.utils import instantiate

    plain = OmegaConf.to_container(node, resolve=True)
    shard = parse_shard(plain.pop(SHARD_KEY, None))
    return instantiate(OmegaConf.create(plain)), shard
