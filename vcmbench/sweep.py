"""`vcmbench sweep --shards N`: one sweep cut into N shards, run as jobs, then merged.

The shards run through Hydra's own launchers (`vcmbench run -m dataset.shard=1/N,...`):
`--launcher slurm` submits them as a SLURM job array with hydra-submitit-launcher (the submitting
process waits for the array), `--launcher local` runs each as its own `vcmbench run` process on
this machine, `--jobs` at a time (a failing shard stops no other, which a joblib pool would). Each shard is an ordinary run folder, `<out>/shardKofN/`, resumable on its
own. A shard whose folder already holds a finished run with the same settings is not submitted
again: after a failed or timed-out job, running the same command resubmits only the shards that
are missing. When every shard has finished, they are merged into `<out>/merged/` (vcmbench.merge).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from vcmbench.errors import MissingDependencyError, VcmbenchError, error_line
from vcmbench.provenance import read_run_info

LAUNCHERS = {"slurm": "submitit_slurm", "local": None}


def shard_folder(out: Path, index: int, count: int) -> Path:
    return out / f"shard{index}of{count}"


def finished_with(folder: Path, settings: dict) -> bool:
    """Whether `folder` holds a finished run of these settings (merge.settings_of)."""
    from omegaconf import OmegaConf

    from vcmbench.merge import settings_of

    cfg = folder / "config.resolved.yaml"
    if not (cfg.is_file() and (folder / "points.csv").is_file() and read_run_info(folder).get("finished")):
        return False
    return settings_of(OmegaConf.load(cfg)) == settings


def why_unfinished(folder: Path, out: Path) -> str:
    """What is known of a shard that did not finish: its job and the last line of its error log."""
    if not folder.is_dir():
        return "never started (no run folder): its job was not run, or died before it began"
    job = read_run_info(folder).get("job") or {}
    job_id, array, task = job.get("slurm_job_id"), job.get("slurm_array_job_id"), job.get("slurm_array_task_id")
    submitit = out / ".submitit"
    if job_id:
        logs = sorted((submitit / (f"{array}_{task}" if array and task is not None else str(job_id))).glob("*_log.err"))
    else:  # it stopped before writing run.json: the submitit log that names its folder
        logs = [
            log
            for log in sorted(submitit.glob("*_*/*_log.err"), key=lambda p: p.stat().st_mtime, reverse=True)
            if str(folder) in log.read_text(errors="replace")
        ][:1]
        job_id = logs[0].parent.name if logs else None
    named = f"{array}_{task}" if array and task is not None else job_id
    where = f"SLURM job {named}" if named else "its process"
    for log in [*logs, folder / "run.log"]:
        if log.is_file():
            lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            errors = [ln for ln in lines if "error" in ln.lower()]
            if errors:
                return f"{where} stopped: {errors[-1][-300:]} (log: {log})"
    return f"{where} stopped before the end of its sweep (see {folder / 'run.log'})"


def job_config(overrides: list[str], count: int):
    """The config of the sweep's first shard: the command line less Hydra's own settings (the
    launcher's), which are not part of a run's config."""
    from vcmbench.config import compose_config

    plain = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    return compose_config("config", [*plain, f"dataset.shard=1/{count}"])


def run_shards(
    overrides: list[str], count: int, launcher: str, out: Path, jobs: int | None = None, cfg=None
) -> list[int]:
    """Run the shards of `overrides` not yet finished in `out`; returns the shards still unfinished.
    `cfg`: job_config(overrides, count), when the caller has it already."""
    from vcmbench.cli import _check_run
    from vcmbench.command_line import check_command_line
    from vcmbench.merge import settings_of

    shards = [f"{k}/{count}" for k in range(1, count + 1)]
    if launcher == "slurm":
        try:
            import hydra_plugins.hydra_submitit_launcher  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                "--launcher slurm needs hydra-submitit-launcher: pip install "
                "'vcmbench[cluster]' (or hydra-submitit-launcher==1.2.0)"
            ) from None
    launcher_choice = [f"hydra/launcher={LAUNCHERS[launcher]}"] if LAUNCHERS[launcher] else []
    check_command_line("config", [*launcher_choice, *overrides, f"dataset.shard={shards[0]}"], _check_run)
    settings = settings_of(cfg if cfg is not None else job_config(overrides, count))
    todo = [k for k in range(1, count + 1) if not finished_with(shard_folder(out, k, count), settings)]
    if todo:
        print(
            f"vcmbench sweep: running shard(s) {', '.join(f'{k}/{count}' for k in todo)} with the {launcher} "
            f"launcher into {out}",
            flush=True,
        )
        run = [sys.executable, "-m", "vcmbench", "run"]
        if launcher == "local":
            workers = (
                [] if any(o.startswith("sweep.workers=") for o in overrides) else ["sweep.workers=1"]
            )  # shards: the cores
            _run_local(
                [
                    [
                        *run,
                        *workers,
                        *overrides,
                        "report=false",
                        f"dataset.shard={k}/{count}",
                        f"hydra.run.dir={shard_folder(out, k, count)}",
                    ]
                    for k in todo
                ],
                jobs or len(todo),
            )
        else:
            submitter = subprocess.Popen(
                [
                    *run,
                    "-m",
                    "hydra/launcher=submitit_slurm",
                    *overrides,
                    "report=false",
                    f"dataset.shard={','.join(f'{k}/{count}' for k in todo)}",
                    f"hydra.sweep.dir={out}",
                    "hydra.sweep.subdir='${shard_name:${dataset.shard}}'",
                ]
            )
            _watch_slurm(submitter, out)
    return [k for k in range(1, count + 1) if not finished_with(shard_folder(out, k, count), settings)]


def _run_local(commands: list[list[str]], jobs: int) -> None:
    """Each shard's `vcmbench run` as its own process, `jobs` at a time: one that fails stops no other."""
    pending, running = list(commands), []
    while pending or running:
        while pending and len(running) < jobs:
            running.append(subprocess.Popen(pending.pop(0)))
        running = [p for p in running if p.poll() is None]
        time.sleep(0.2)


def _queued(out: Path) -> bool | None:
    """Whether a SLURM job of this sweep (its ids: the folders submitit made in <out>/.submitit) is
    still queued or running; None before any was submitted."""
    ids = sorted({d.name.split("_")[0] for d in (out / ".submitit").glob("*") if d.is_dir()})
    if not ids:
        return None
    queue = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(ids)], capture_output=True, text=True)
    return queue.returncode == 0 and bool(queue.stdout.strip())


def _watch_slurm(submitter: subprocess.Popen, out: Path, poll_s: float = 5.0, grace_s: float = 60.0) -> None:
    """Wait for the submitting process and for every job of the sweep to leave the queue.

    submitit returns at the first failed job while the other shards' jobs go on: they are waited
    for, then judged. A job SLURM killed (time limit, node failure) leaves no result file, and where
    SLURM keeps no accounting (no sacct) submitit would wait for it forever: once no job of the
    sweep has been queued for `grace_s`, the submitting process is stopped and the shards judged.
    """
    left_queue = None
    while True:
        queued = _queued(out)
        if submitter.poll() is not None and not queued:
            return
        if queued is False:
            left_queue = left_queue or time.monotonic()
            if submitter.poll() is None and time.monotonic() - left_queue > grace_s:
                submitter.terminate()
                submitter.wait(timeout=60)
                return
        else:
            left_queue = None
        time.sleep(poll_s)


def sweep_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="vcmbench sweep",
        description="Run a sweep as N shards (dataset.shard=K/N) through a launcher, then merge them into one run "
        "folder. Rerun the same command to resubmit only the shards that did not finish.",
        epilog="Everything else is Hydra overrides of `vcmbench run` (codec=..., dataset=..., hydra.launcher.*=...).",
    )
    ap.add_argument("--shards", type=int, required=True, metavar="N", help="how many parts to cut the items into")
    ap.add_argument(
        "--launcher",
        choices=sorted(LAUNCHERS),
        default="local",
        help="local: parallel processes here; slurm: a SLURM job array (submitit)",
    )
    ap.add_argument("--jobs", type=int, metavar="J", help="local launcher: shards at a time (default: all)")
    ap.add_argument("--out", metavar="DIR", help="sweep folder (default: <results_dir>/sharded/<run_name>)")
    args, overrides = ap.parse_known_args(argv)
    from vcmbench.run_config import moved_overrides

    overrides = moved_overrides(overrides, warn=lambda line: print(line, file=sys.stderr))
    try:
        if args.shards < 1:
            raise VcmbenchError(f"--shards {args.shards}: give the number of parts, 1 or more")
        cfg = job_config(overrides, args.shards)
        out = Path(args.out) if args.out else Path(str(cfg.results_dir)) / "sharded" / str(cfg.run_name)
        unfinished = run_shards(overrides, args.shards, args.launcher, out.resolve(), args.jobs, cfg)
        if unfinished:
            for k in unfinished:
                folder = shard_folder(out, k, args.shards)
                print(
                    f"vcmbench sweep: shard {k}/{args.shards} did not finish: {why_unfinished(folder, out)}",
                    file=sys.stderr,
                )
            print(
                f"vcmbench sweep: {len(unfinished)} of {args.shards} shards unfinished; run the same command again "
                "to resubmit only those (finished shards are kept)",
                file=sys.stderr,
            )
            return 1
        from vcmbench.merge import merge_runs

        points = merge_runs([shard_folder(out, k, args.shards) for k in range(1, args.shards + 1)], out / "merged")
    except VcmbenchError as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    cols = [c for c in ("codec", "rate", "sequence", "n_images", "bpp", "kbps", "map") if c in points.columns]
    print(points[cols].to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    print(f"merged run folder: {out / 'merged'} (vcmbench report {out / 'merged'})")
    return 0
