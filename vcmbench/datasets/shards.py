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
import re
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from vcmbench.errors import ConfigError

SHARD_KEY = "shard"
_FORM = re.compile(r"^\s*(\d+)\s*(?:/|of)\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Part `index` (1-based) of `count`."""

    index: int
    count: int

    @property
    def label(self) -> str:
        """`K/N`, as given on the command line and written in points.csv."""
        return f"{self.index}/{self.count}"

    @property
    def tag(self) -> str:
        """`shardKofN`: the label where a slash cannot go (folder names)."""
        return f"shard{self.index}of{self.count}"

    def select(self, dataset):
        """The dataset's view holding this shard's items only."""
        return dataset.subset(self.item_ids(dataset.records))

    def item_ids(self, items) -> list[int]:
        """This shard's item ids, in the dataset's order."""
        return [item.image_id for item in partition(items, self.count)[self.index - 1]]


def parse_shard(value: object, setting: str = f"dataset.{SHARD_KEY}") -> Shard | None:
    """`K/N` (or `KofN`, 1 <= K <= N) as a Shard; null/none/empty as no shard."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none")):
        return None
    match = _FORM.match(str(value))
    if not match:
        raise ConfigError(f"{setting}={value!r}: not a shard; give K/N, the K-th of N parts (e.g. {setting}=1/4), "
                          f"or {setting}=null for the whole set")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= index <= count:
        raise ConfigError(f"{setting}={value!r}: K must be from 1 to N; the parts of {count} are 1/{count} .. "
                          f"{count}/{count}")
    return Shard(index, count)


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


def split_dataset_config(node: DictConfig) -> tuple[DictConfig, Shard | None]:
    """A dataset config node -> (the node without `shard`, ready to instantiate; the shard or None)."""
    plain = OmegaConf.to_container(node, resolve=True)
    shard = parse_shard(plain.pop(SHARD_KEY, None))
    return OmegaConf.create(plain), shard


def shardable(build):
    """A dataset builder that also takes its yaml's `shard:`: the whole set is built, then cut, so
    `instantiate(cfg.dataset)` anywhere gives the items the config names."""

    @functools.wraps(build)
    def build_shard(*args, shard: object = None, **kwargs):
        dataset = build(*args, **kwargs)
        cut = parse_shard(shard)
        return dataset if cut is None else cut.select(dataset)

    return build_shard


def instantiate_whole(node: DictConfig):
    """(the whole dataset of a config node, its shard or None): the runner codes the shard's items
    and keeps the whole set for what is the whole set's (the complexity pass's first image)."""
    from hydra.utils import instantiate

    plain, shard = split_dataset_config(node)
    return instantiate(plain), shard
