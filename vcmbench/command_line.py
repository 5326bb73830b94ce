"""A Hydra command line checked before anything runs, so a mistake costs one line, not a sweep.

Hydra reports a composition failure (an unknown config group option, a missing mandatory
value) in a multi-line report of its own, and an untyped YAML value such as `workers=abc`
only fails once the run is under way. `check_command_line` composes every job the command
line describes (each combination of a multirun sweep) with the packaged configs plus any
`--config-dir`, the way `vcmbench run` will, and turns the first problem into a ConfigError
whose message names the setting, the bad value and the fix: the CLI prints it as one
`vcmbench: error:` line and exits with status 2.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue, OmegaConfBaseException

from vcmbench.config import CONFIG_MODULE, apply_dataset_run_defaults, forget_checked
from vcmbench.errors import ConfigError

# what a config file can check beyond composing: config name -> check of one composed job
Check = Callable[[DictConfig], None]


def check_command_line(config_name: str, argv: Sequence[str], check: Check | None = None) -> None:
    """Raise ConfigError (one line) if any job of this command line would not compose or check."""
    from hydra._internal.utils import get_args_parser

    try:
        args = get_args_parser().parse_args(list(argv))
    except SystemExit as exc:  # argparse already printed its usage line
        raise ConfigError(f"command line {' '.join(argv)!r}: not understood; see `vcmbench run --help`") from exc
    if args.help or args.hydra_help or args.info or args.shell_completion or args.cfg:
        return  # Hydra's own help and inspection commands: nothing runs
    forget_checked()  # codecs an earlier check kept are not this command's
    overrides = list(args.overrides)
    if args.config_dir:
        folder = Path(args.config_dir).expanduser().resolve()
        if not folder.is_dir():
            raise ConfigError(
                f"--config-dir {args.config_dir}: no such folder; pass the folder that holds your "
                f"codec/, dataset/ or model/ yaml"
            )
        overrides.append(f"hydra.searchpath=[file://{folder}]")
    for job in _jobs(overrides, multirun=args.multirun):
        cfg = _compose(config_name, job)
        if config_name == "config":
            apply_dataset_run_defaults(cfg, job)  # as the run will (cli._run)
        _check_values_present(cfg)
        if check is not None:
            check(cfg)


def _jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override list of each job: one for a plain run, every sweep combination for -m."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError(f"command line: {_first_line(exc)}; write overrides as key=value (Hydra syntax)") from None
    sweeps = [o for o in parsed if o.is_sweep_override()]
    if not sweeps:
        return [overrides]
    if not multirun:
        o = sweeps[0]
        raise ConfigError(
            f"{o.input_line}: a list of values sweeps several runs; add -m (multirun), or pick one "
            f"value (or write [a,b] for a list value)"
        )
    try:
        return BasicSweeper.split_arguments(parsed, None)[0]
    except HydraException as exc:
        raise ConfigError(f"command line: {_first_line(exc)}") from None


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException

    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        try:
            return compose(config_name=config_name, overrides=overrides)
        except MissingConfigException as exc:
            loader = GlobalHydra.instance().config_loader()
            raise ConfigError(_missing_option(exc, overrides, loader.get_group_options)) from None
        except (ConfigCompositionException, HydraException, OmegaConfBaseException) as exc:
            raise ConfigError(_composition_error(exc, overrides, config_name)) from None


def _missing_option(exc, overrides: list[str], group_options: Callable[[str], list[str]]) -> str:
    """`codec=nonexistent` -> the group, the bad option and the options there are."""
    found = re.search(r"Could not (?:find|load) '([^']+)'", str(exc))
    missing = found.group(1) if found else (exc.missing_cfg_file or "?")
    group, _, option = missing.rpartition("/")
    options = sorted(exc.options or (group_options(group) if group else []))
    if group and options:
        return (
            f"{group}={option}: no such {group} config; choose one of {', '.join(options)} "
            f"(or add {group}/{option}.yaml under a --config-dir)"
        )
    return f"{' '.join(overrides)}: config {missing!r} not found ({_first_line(exc)})"


def _composition_error(exc: BaseException, overrides: list[str], config_name: str) -> str:
    """The override Hydra could not apply, named on its own where the message says which."""
    found = re.search(r"Could not override '([^']+)'", str(exc))
    if found:
        key = found.group(1)
        typed = next((o for o in overrides if o.split("=", 1)[0] == key), key)
        return (
            f"{typed}: {config_name}.yaml has no setting {key!r}; check the spelling "
            f"(`vcmbench run --cfg job` prints every setting), or write +{typed} to add a new key"
        )
    return f"{' '.join(overrides) or config_name}: {_first_line(exc)}"


def _check_values_present(cfg: DictConfig) -> None:
    """Every `???` filled in and every `${...}` resolvable, named by its full key."""
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        key = exc.full_key
        top = key.split(".")[0]
        hint = cfg[top].get("how_to_get") if isinstance(cfg.get(top), DictConfig) else None
        raise ConfigError(
            f"{key}=???: this setting has no value; set it on the command line ({key}=...)"
            + (f". {' '.join(str(hint).split())}" if hint else "")
        ) from None
    except InterpolationResolutionError as exc:
        raise ConfigError(
            f"{exc.full_key}: {_first_line(exc)}; fix the ${{...}} reference or set the value directly"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return re.sub(r"\s*full_key:.*$", "", text) or type(exc).__name__
