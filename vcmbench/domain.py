"""Which network a trained codec was trained for, against the run's: a codec meeting features of
another network is refused, left out, or coded and marked, never silently scored.

A learned codec trained on one front's features (the committed checkpoints: `ci_frcnn` on
synthetic scenes) codes another front's features badly (120 bpp instead of 1.7 at one quality on
a real-size torchvision network) and nothing in its numbers says why. So before the first item:

- a codec named in `codec=` whose checkpoints were trained for another network stops the run,
  in one line naming both and the two ways out (train one, or `allow_foreign=true`);
- with the default selection (`codec: null`) such codecs are left out, and the run says so;
- with `codec.NAME.allow_foreign=true` the codec runs and its rows are marked `foreign`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from omegaconf import DictConfig

from vcmbench.codecs.base import Codec
from vcmbench.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Network:
    """The run's network as a checkpoint records it: the front's name, split and weights' digest."""

    name: str
    split: str
    sha256: str
    front: str | None = None  # digest of the front's weights alone (features.front_digest)

    def describe(self) -> str:
        return f"{self.name} ({self.split}, weights {_short(self.sha256)})"


def run_network(model_cfg: DictConfig) -> Network:
    from vcmbench.codecs.learned.features import front_digest, front_fingerprint

    front = front_fingerprint(model_cfg)
    return Network(
        str(front["name"]), str(model_cfg.get("split", "fpn")), str(front["sha256"]), front_digest(model_cfg)
    )


def _short(sha: object) -> str:
    text = str(sha)
    return text[:12] if len(text) == 64 else text


def foreign_to(trained: list[dict], network: Network) -> dict | None:
    """The first checkpoint (of `Codec.trained_on`) made for another network than `network`, or None.

    What decides is what the codec sees: the features. So the split must be the same, and the
    front's weights: compared as digests of the front's tensors where both sides have one (a
    network with another head on the same front, ci_maskrcnn on ci_frcnn's, is the same domain),
    else by the front's name and the weights file's sha256."""
    for t in trained:
        if str(t.get("split", "fpn")) != network.split:
            return t
        if t.get("front") and network.front:
            if str(t["front"]) != network.front:
                return t
            continue
        if str(t.get("network")) != network.name or (t.get("sha256") and str(t["sha256"]) != network.sha256):
            return t
    return None


def foreign_message(name: str, trained: dict, network: Network) -> str:
    """The one line that stops a run naming a codec trained for another network."""
    what = (
        f"{trained.get('network')} ({trained.get('split', 'fpn')}, weights {_short(trained.get('sha256'))}, "
        f"{trained.get('channels')}-channel levels, data {trained.get('data')})"
    )
    return (
        f"codec {name}: {trained.get('source')} was trained on features of {what}, but this run's network is "
        f"{network.describe()}; train a checkpoint for it (`vcmbench train codec={name} model=<this model> "
        f"quality=K copy_to=DIR`, then codec.{name}.checkpoint_dir=DIR) or set codec.{name}.allow_foreign=true to "
        "code anyway (its rows are then marked foreign)"
    )


@dataclass
class DomainCheck:
    """The run's verdicts: codecs left out (default selection) and codecs coding foreign features,
    and the run's network they were judged against (worked out once, at the first trained codec)."""

    left_out: list[str] = field(default_factory=list)
    foreign: set[str] = field(default_factory=set)
    network: Network | None = None

    def note(self) -> str | None:
        if not self.left_out or self.network is None:
            return None
        return (
            f"left out {', '.join(self.left_out)}: trained for another network than {self.network.describe()} (name "
            "them in codec= with codec.NAME.allow_foreign=true to code anyway)"
        )


def check_codec(
    name: str, codec: Codec, model_cfg: DictConfig, explicit: bool, allow_foreign: bool, verdict: DomainCheck
) -> bool:
    """Whether the run keeps `codec`; records what it decided in `verdict`, raises for an explicit
    foreign codec not allowed."""
    trained = codec.trained_on()
    if not trained:
        return True
    if verdict.network is None:
        verdict.network = run_network(model_cfg)
    other = foreign_to(trained, verdict.network)
    if other is None:
        return True
    if allow_foreign:
        verdict.foreign.add(name)
        return True
    if explicit:
        raise ConfigError(foreign_message(name, other, verdict.network))
    verdict.left_out.append(name)
    return False
