"""Where the Hydra configs live and how codec selections are resolved.

The configs ship inside the package (`vcmbench/conf`, Hydra's `pkg://vcmbench.conf`), so an
installed wheel runs from any directory; users add their own yaml with `--config-dir` or a
`hydra.searchpath` entry. A codec is
one yaml in the `codec` group whose single top-level key is the codec's name (and its file
name); selecting none (`codec: null`, the default) means every codec whose yaml does not say
`meta: {in_default_run: false}` (codecs that need a user-supplied binary or checkpoint).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from vcmbench import run_config as run_config  # registers the run schema before any composition
from vcmbench.errors import ConfigError

CONFIG_MODULE = "vcmbench.conf"
ROLES = ("feature_anchor", "image_anchor", "uncompressed", "test")


def all_codec_configs(include_optional: bool = False) -> dict[str, DictConfig]:
    """Every codec yaml of the `codec` config group, keyed by codec name (the yaml's one key).

    Listed through Hydra's config search path: inside `vcmbench run` that is the packaged
    configs plus any `--config-dir` / `hydra.searchpath` folder, so a user's codec yaml joins
    the default sweep too; elsewhere (tests, benchmarks, worker processes) the packaged ones.
    """
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return _codec_group(GlobalHydra.instance().config_loader(), include_optional)
    from hydra import initialize_config_module

    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return _codec_group(GlobalHydra.instance().config_loader(), include_optional)


def _codec_group(loader, include_optional: bool) -> dict[str, DictConfig]:
    out: dict[str, DictConfig] = {}
    for option in loader.get_group_options("codec"):
        result = loader.repository.load_config(f"codec/{option}")
        node = None if result is None else result.config
        if not isinstance(node, DictConfig) or len(node) != 1:
            raise ConfigError(
                f"codec/{option}.yaml ({getattr(result, 'path', '?')}): a codec yaml must hold exactly "
                f"one top-level key, the codec's name"
            )
        (name,) = node.keys()
        if str(name) != option:
            raise ConfigError(
                f"codec/{option}.yaml: its top-level key is {name!r}; name the file {name}.yaml or the "
                f"key {option}, so `codec={option}` and the codec's name agree"
            )
        sub = node[name]
        if include_optional or codec_meta(sub).get("in_default_run", True):
            out[str(name)] = sub
    return out


def codec_meta(node: DictConfig) -> dict:
    """vcmbench's own keys of a codec yaml (`meta:`): its role and whether the default run has it.

    role: feature_anchor (the reference of BD-rates) | image_anchor (the reference of image
    coding) | uncompressed (the accuracy ceiling) | test (default).
    """
    meta = node.get("meta") if isinstance(node, DictConfig) else None
    out = OmegaConf.to_container(meta, resolve=True) if isinstance(meta, DictConfig) else {}
    role = out.setdefault("role", "test")
    if role not in ROLES:
        raise ConfigError(f"meta.role={role!r}: choose one of {list(ROLES)}")
    return out


def compose_config(config_name: str = "config", overrides: Sequence[str] = (), **kwargs) -> DictConfig:
    """conf/<config_name>.yaml with Hydra overrides, for code outside a Hydra app (benchmarks,
    tests, the predictor's training): the same composition `vcmbench run` does (the sweep's
    settings under their old top-level names too: run_config.moved_overrides)."""
    from hydra import compose, initialize_config_module

    if config_name == "config":
        from vcmbench.run_config import moved_overrides

        overrides = moved_overrides(overrides)

    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides), **kwargs)
    if config_name == "config":
        apply_dataset_run_defaults(cfg, overrides)  # as `vcmbench run` does
    return cfg


def runnable_codec_config(node: DictConfig, name: str | None = None) -> DictConfig:
    """A codec yaml's node ready to instantiate: interpolations resolved, vcmbench's own keys
    (`meta:`) removed, since they are not arguments of the codec, and `name` set to the yaml
    key it is given (a `name:` that disagrees with the key is an error)."""
    node = OmegaConf.create(OmegaConf.to_container(node, resolve=True))
    node.pop("meta", None)
    node.pop("allow_foreign", None)  # the run's, not the codec's (vcmbench.domain)
    if name is not None:
        given = node.get("name")
        if given is not None and str(given) != name:
            raise ConfigError(f"codec.{name}.name={given!r}: a codec's name is its yaml key ({name}); drop name:")
        node.name = name
    return node


#: codecs the command-line check built (`build(node, keep=True)`), each handed once to the run that
#: follows in this process, so a codec is built once per process, not once for the check and again
#: for the sweep; every new check starts empty (`forget_checked`), so nothing outlives its command
_CHECKED: dict[str, object] = {}


def forget_checked() -> None:
    """Drop the codecs an earlier check kept (a check that was not followed by its run)."""
    _CHECKED.clear()


def build(node: DictConfig, keep: bool = False):
    """`hydra.utils.instantiate(node)`, with our own errors unwrapped from Hydra's
    InstantiationException: a bad nested setting (a back-end's ffmpeg path) reads as itself.

    `keep`: the command-line check's build, kept for the run of the same node (see _CHECKED).
    """
    try:
        key = OmegaConf.to_yaml(node, resolve=True)
    except Exception:  # noqa: BLE001 - a node that does not resolve: the build below says what is wrong
        return _instantiate(node)
    if key in _CHECKED:
        return _CHECKED.pop(key)
    built = _instantiate(node)
    if keep:
        _CHECKED[key] = built
    return built


def _instantiate(node: DictConfig):
    from hydra.utils import instantiate

    from vcmbench.errors import VcmbenchError

    try:
        return instantiate(node)
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, VcmbenchError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from None


def _selected_nodes(cfg: DictConfig) -> dict[str, DictConfig]:
    """The run's codec yaml nodes as written: the `codec` selection, or all default-run codecs."""
    sel = cfg.get("codec")
    nodes = {str(k): v for k, v in sel.items()} if sel else all_codec_configs()
    if not nodes:
        raise ConfigError("no codec selected and none found in conf/codec; pass codec=raw (for example)")
    return nodes


def selected_codec_configs(cfg: DictConfig) -> dict[str, DictConfig]:
    """The codecs of this run, ready to instantiate (runnable_codec_config), at the network's rate
    points where its model yaml gives some (model_run_defaults)."""
    clean = {}
    network_rates = model_run_defaults(cfg).get("codec_rates") or {}
    packaged = all_codec_configs(include_optional=True) if network_rates else {}
    for name, node in _selected_nodes(cfg).items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(f"codec.{name}: not a codec config (no _target_); see conf/codec/*.yaml")
        clean[name] = runnable_codec_config(node, name)
        own = packaged.get(name)
        if name in network_rates and own is not None and _same(node.get("rates"), own.get("rates")):
            clean[name].rates = list(network_rates[name])
    return clean


def model_run_defaults(cfg: DictConfig) -> dict:
    """What a network's yaml asks of a run (`model.run_defaults`) where the packaged defaults, made
    for ci_frcnn, do not suit it: `codec_rates` (codec -> rate points: the CTC, too, gives each
    network its own QPs) and `dataset` (setting -> value, e.g. every frame of a video set for a
    network that tracks). Only a setting left at its packaged value takes it: a codec whose `rates`
    are its yaml's, a dataset setting not on the command line (apply_dataset_run_defaults)."""
    model = cfg.get("model")
    node = model.get("run_defaults") if isinstance(model, DictConfig) else None
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else {}


def apply_dataset_run_defaults(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Set the dataset settings of `model.run_defaults.dataset` that the dataset has and the command
    line (`overrides`, Hydra's) does not set (config.resolved.yaml then shows what the run used)."""
    given = {o.lstrip("+~").split("=", 1)[0] for o in overrides}
    for key, value in (model_run_defaults(cfg).get("dataset") or {}).items():
        if key in cfg.dataset and f"dataset.{key}" not in given:
            OmegaConf.update(cfg, f"dataset.{key}", value, force_add=True)


def _same(a: object, b: object) -> bool:
    return _plain(a) == _plain(b)


def _plain(value: object) -> object:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def codec_allow_foreign(cfg: DictConfig) -> dict[str, bool]:
    """codec name -> its `allow_foreign` setting: code features of a network its checkpoints were
    not trained for, the rows marked (vcmbench.domain)."""
    from vcmbench.settings import as_bool

    return {
        name: as_bool(node.get("allow_foreign", False), f"codec.{name}.allow_foreign")
        for name, node in _selected_nodes(cfg).items()
        if isinstance(node, DictConfig)
    }


def selected_codec_roles(cfg: DictConfig) -> dict[str, str]:
    """codec name -> role (codec_meta) of this run's codecs; they travel in points.csv."""
    return {name: codec_meta(node)["role"] for name, node in _selected_nodes(cfg).items()}


def _codec_yaml(name: str) -> dict:
    """`${codec_yaml:NAME}`: codec NAME's yaml as a nested node (the joint codec's base layer),
    so its settings are part of the config that holds it, and of its resume fingerprint."""
    configs = all_codec_configs(include_optional=True)
    if name not in configs:
        raise ConfigError(f"${{codec_yaml:{name}}}: no codec yaml named {name!r}; choose one of {sorted(configs)}")
    return OmegaConf.to_container(runnable_codec_config(configs[name], name), resolve=True)


OmegaConf.register_new_resolver("codec_yaml", _codec_yaml, replace=True)


def _split_tag(split: object) -> str:
    """`${split_tag:${model.split}}`: nothing for the FPN cut, `@backbone` (`@tvd`, ...) otherwise, so a
    run split elsewhere gets its own run folder (as its points get their own model name); a list of
    layers (JDE's `model.split=[36,61,74]`) is `@l36-61-74`, a folder name."""
    if split in (None, "fpn"):
        return ""
    if isinstance(split, (list, tuple)) or (hasattr(split, "__len__") and not isinstance(split, str)):
        return "@l" + "-".join(str(int(v)) for v in split)
    return f"@{split}"


OmegaConf.register_new_resolver("split_tag", _split_tag, replace=True)


def _shard_name(shard: object) -> str:
    """`${shard_name:${dataset.shard}}`: `shardKofN` for a shard (a folder name), `all` without one."""
    from vcmbench.settings import parse_shard

    cut = parse_shard(shard)
    return "all" if cut is None else cut.tag


def _shard_tag(shard: object) -> str:
    """`${shard_tag:${dataset.shard}}`: nothing for the whole set, `-shardKofN` for a shard, so each
    shard of a sweep has its own run folder (and resumes on its own)."""
    name = _shard_name(shard)
    return "" if name == "all" else f"-{name}"


def _path_safe(name: object) -> str:
    """`${path_safe:${hydra.job.override_dirname}}`: a multirun job's folder name without slashes
    (they would nest folders): `dataset.shard=1/4` becomes `dataset.shard=1of4`."""
    import re

    return re.sub(r"(\d+)/(\d+)", r"\1of\2", str(name)).replace("/", "_")


OmegaConf.register_new_resolver("shard_tag", _shard_tag, replace=True)
OmegaConf.register_new_resolver("shard_name", _shard_name, replace=True)
OmegaConf.register_new_resolver("path_safe", _path_safe, replace=True)


def fingerprint(*nodes: object) -> str:
    """Short stable hash of config nodes: the `setup` part of a record's resume key."""
    h = hashlib.sha1()
    for node in nodes:
        if isinstance(node, DictConfig):
            node = OmegaConf.to_yaml(node, sort_keys=True)
        h.update(repr(node).encode())
    return h.hexdigest()[:12]
