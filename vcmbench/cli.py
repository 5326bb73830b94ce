"""`vcmbench run|report|regress|bdrate|train|train-detector`.

`run` (and the training commands) are Hydra apps: everything after the subcommand is
Hydra overrides (`vcmbench run codec=raw dataset.max_images=8`, `-m` for multirun).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import vcmbench.config  # noqa: F401 - registers the config's resolvers, also in launcher jobs that unpickle this module
from vcmbench.errors import VcmbenchError, error_line


class JobFailed(RuntimeError):
    """A launcher job's user error, raised (not exited with) so the launcher records it."""


def _user_error(exc: BaseException) -> VcmbenchError | None:
    """Our error inside whatever wrapped it (Hydra's instantiate wraps target errors)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, VcmbenchError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _hydra_app(task: Callable, config_name: str, argv: list[str], check: Callable | None = None) -> int:
    """Run `task(cfg, out_dir)` as a Hydra app, after every job of the command line has composed
    and passed `check` (command_line.py): a bad setting is one line before anything starts."""
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from vcmbench.command_line import check_command_line

    check_command_line(config_name, argv, check)

    @hydra.main(config_path="pkg://vcmbench.conf", config_name=config_name, version_base="1.3")
    def app(cfg) -> None:
        try:
            task(cfg, HydraConfig.get().runtime.output_dir)
        except Exception as exc:
            user = _user_error(exc)
            if user is None:
                raise
            # A user error: its message is the whole story, no traceback. The run's log keeps it too
            # (a launcher's job, whose terminal nobody sees: `vcmbench sweep` reports it by shard).
            _print_error(user)
            line = error_line(user)
            with open(Path(HydraConfig.get().runtime.output_dir) / "run.log", "a", encoding="utf-8") as log:
                log.write(line + "\n")
            if "submitit" in str(HydraConfig.get().launcher.get("_target_", "")):
                # a SLURM job: an exception (not an exit) leaves submitit its result file, so the
                # submitting process learns at once that this job failed, and why
                raise JobFailed(line) from None
            sys.exit(2)

    sys.argv = [f"vcmbench {config_name}", *argv]
    app()
    return 0


def _print_error(exc: BaseException) -> None:
    """`vcmbench: error: <message>` on one line, whatever line breaks the message had."""
    print(error_line(exc), file=sys.stderr)


def _check_run(cfg) -> None:
    """What `vcmbench run` checks before it starts: its own settings, the dataset's size limit,
    and every selected codec's settings and rate points (by building the codecs)."""
    from vcmbench.config import build, selected_codec_configs
    from vcmbench.datasets.shards import parse_shard
    from vcmbench.settings import RunSettings, as_int

    RunSettings.from_config(cfg)
    as_int(cfg.dataset.get("max_images"), "dataset.max_images", minimum=1, allow_none=True)
    parse_shard(cfg.dataset.get("shard"))
    _bootstrap_settings(cfg)
    for node in selected_codec_configs(cfg).values():
        build(node, keep=True)  # the run that follows takes these (config._CHECKED): one build per process


def _bootstrap_settings(cfg):
    """The run's report intervals (`bootstrap:` in config.yaml, read into RunSettings), checked."""
    from vcmbench.bootstrap import BootstrapSettings
    from vcmbench.settings import RunSettings

    return BootstrapSettings(*RunSettings.from_config(cfg).bootstrap).check("bootstrap")


def _run(cfg, out_dir: str) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from vcmbench.config import apply_dataset_run_defaults
    from vcmbench.run import run_sweep
    from vcmbench.settings import RunSettings

    apply_dataset_run_defaults(cfg, HydraConfig.get().overrides.task)
    # Multirun jobs each hold one slice of the sweep: their merged report is `vcmbench report SWEEP_DIR`.
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    report = RunSettings.from_config(cfg).report and not multirun
    points = run_sweep(cfg, out_dir, timing_pass=report)
    cols = [
        c
        for c in ("codec", "rate", "sequence", "n_images", "n_failed", "bpp", "kbps", "map", "ap50", "enc_s", "dec_s")
        if c in points.columns
    ]
    print(points[cols].to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    print(f"points table: {out_dir}/points.csv")
    if report:
        from vcmbench.render.report import write_report

        rep = write_report([out_dir], Path(out_dir) / "report", bootstrap=_bootstrap_settings(cfg))
        print(f"report: {rep.markdown} (and report.html, figures/)")


def _report(argv: list[str]) -> int:
    """`vcmbench report`, with the shards of a sharded sweep's folder merged first."""
    from vcmbench.merge import merge_sharded
    from vcmbench.render.report_cli import report_main

    return report_main(argv, expand_paths=merge_sharded)


def _lazy(module: str, func: str) -> Callable[[list[str]], int]:
    """Import a subcommand's module only when it runs: `vcmbench run` stays quick to start."""

    def call(argv: list[str]) -> int:
        import importlib

        return getattr(importlib.import_module(module), func)(argv)

    return call


def _hydra_task(module: str, func: str, config_name: str) -> Callable[[list[str]], int]:
    """A Hydra-configured subcommand whose task is `module.func(cfg, out_dir)`."""

    def task(cfg, out_dir: str) -> None:
        import importlib
        import json

        info = getattr(importlib.import_module(module), func)(cfg, out_dir)
        if isinstance(info, dict):
            shown = {k: v for k, v in info.items() if k not in ("losses", "config", "history")}
            print(json.dumps(shown, indent=2, default=str))
        print(f"outputs: {out_dir}")

    return lambda argv: _hydra_app(task, config_name, argv)


COMMANDS = {
    "run": lambda argv: _hydra_app(_run, "config", argv, _check_run),
    "train-detector": _hydra_task("vcmbench.train.detector", "train_detector", "train_detector"),
    "train-jde": _hydra_task("vcmbench.train.jde", "train_jde", "train_jde"),
    "train": _hydra_task("vcmbench.train.feature_codec", "train_feature_codec", "train"),
    "train-predictor": _lazy("vcmbench.train.predictor", "main"),
    "report": _report,
    "bdrate": _lazy("vcmbench.render.report_cli", "bdrate_main"),
    "regress": _lazy("vcmbench.regress", "regress_main"),
    "merge": _lazy("vcmbench.merge", "merge_main"),
    "sweep": _lazy("vcmbench.sweep", "sweep_main"),
    "export": _lazy("vcmbench.render.cttc", "export_main"),
    "golden": _lazy("vcmbench.golden", "golden_main"),
}


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(
            f"usage: vcmbench {{{'|'.join(COMMANDS)}}} [args]\n"
            "  run      sweep codecs x rate points (Hydra overrides follow; -m for multirun)\n"
            "  train-detector  train the offline CI detector ci_frcnn on synthetic scenes\n"
            "  train-jde  train the offline CI JDE ci_jde (tracking) on synthetic videos\n"
            "  train    train a learned or hybrid feature codec (codec=learned_interleaved|learned_cascade|hybrid_vvc)\n"
            "  train-predictor  train the joint codec's feature -> image predictor (residual mode)\n"
            "  report   tables, BD-rate and RD plots of one or more runs (md, html, png, svg)\n"
            "  bdrate   BD-rate table of two points tables\n"
            "  sweep    a sweep cut into shards, run by a launcher (--launcher local|slurm), then merged\n"
            "  merge    the shards of a sweep (dataset.shard=K/N) -> one run folder, metrics over the union\n"
            "  regress  exit 1 when a run loses BD-rate against a reference points table\n"
            "  export   a run's results as MPEG's platform writes them for a template (--format cttc: MPEG FCM)\n"
            "  golden   recompute the exact mode's stage digests here; --check FILE compares, --write FILE replaces"
        )
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if argv[0] == "run":  # the one flag of `run` that is not a Hydra override
        from vcmbench.run_config import moved_overrides

        argv = [("sweep.repair=true" if a == "--repair" else a) for a in argv]
        argv = argv[:1] + moved_overrides(argv[1:], warn=lambda line: print(line, file=sys.stderr))
    try:
        return COMMANDS[argv[0]](argv[1:]) or 0
    except Exception as exc:
        user = _user_error(exc)
        if user is None:
            raise
        _print_error(user)
        return 2
