"""Where the Hydra configs live and how codec selections are resolved.

The configs ship inside the package (`vcmbench/conf`, Hydra's `pkg://vcmbench.conf`), so an
installed wheel runs from any directory; users add their own yaml with `--config-dir` or a
`hydra.searchpath` entry. A codec is
one yaml in `conf/codec/` whose single top-level key is the codec's name; selecting
none (`codec: null`, the default) means every codec whose yaml does not say
`in_default_run: false` (codecs that need a user-supplied binary or checkpoint).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vcmbench.errors import ConfigError
from vcmbench.paths import CONF_DIR

_META_KEYS = ("in_default_run",)
CONFIG_MODULE = "vcmbench.conf"


def conf_dir() -> Path:
    """The packaged config folder (`vcmbench/conf`): Hydra reads it as `pkg://vcmbench.conf`."""
    return CONF_DIR


def all_codec_configs(include_optional: bool = False) -> dict[str, DictConfig]:
    """Every codec yaml in conf/codec, keyed by codec name, in file-name order."""
    out: dict[str, DictConfig] = {}
    for path in sorted((conf_dir() / "codec").glob("*.yaml")):
        node = OmegaConf.load(path)
        if not isinstance(node, DictConfig) or len(node) != 1:
            raise ConfigError(f"{path}: a codec yaml must hold exactly one top-level key, the codec's name")
        (name,) = node.keys()
        sub = node[name]
        if include_optional or sub.get("in_default_run", True):
            out[str(name)] = sub
    return out


def compose_config(config_name: str = "config", overrides: Sequence[str] = (), **kwargs) -> DictConfig:
    """conf/<config_name>.yaml with Hydra overrides, for code outside a Hydra app (benchmarks,
    tests, the predictor's training): the same composition `vcmbench run` does."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), **kwargs)


def runnable_codec_config(node: DictConfig) -> DictConfig:
    """A codec yaml's node ready to instantiate: interpolations resolved, vcmbench's own keys
    (`in_default_run`) removed, since they are not arguments of the codec."""
    node = OmegaConf.create(OmegaConf.to_container(node, resolve=True))
    for k in _META_KEYS:
        node.pop(k, None)
    return node


def selected_codec_configs(cfg: DictConfig) -> dict[str, DictConfig]:
    """The codecs of this run: the `codec` selection, or all default-run codecs when empty."""
    sel = cfg.get("codec")
    nodes = dict(sel.items()) if sel else all_codec_configs()
    if not nodes:
        raise ConfigError("no codec selected and none found in conf/codec; pass codec=raw (for example)")
    clean = {}
    for name, node in nodes.items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(f"codec.{name}: not a codec config (no _target_); see conf/codec/*.yaml")
        clean[str(name)] = runnable_codec_config(node)
    return clean


def fingerprint(*nodes: object) -> str:
    """Short stable hash of config nodes: the `setup` part of a record's resume key."""
    h = hashlib.sha1()
    for node in nodes:
        if isinstance(node, DictConfig):
            node = OmegaConf.to_yaml(node, sort_keys=True)
        h.update(repr(node).encode())
    return h.hexdigest()[:12]
