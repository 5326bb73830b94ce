"""Where and from what a run folder was made: vcmbench's commit, the host, the scheduler's job.

A sharded sweep's folders come from many machines and jobs; when a number looks wrong, the
first questions are which code made it (a commit, and whether the tree had changes that no
commit holds), on which host, and under which job (to find its scheduler log). Every run folder
answers them in run.json, and a merged folder lists the answers of each of its shards.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

# SLURM's own variables (sbatch / srun set them in the job's environment); an array task has both
# the array's job id and its index, which name its log files.
SCHEDULER_VARIABLES = (
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_JOB_NAME",
    "SLURM_JOB_PARTITION",
    "SLURM_CLUSTER_NAME",
)


def git_state(where: Path = PACKAGE_DIR) -> dict[str, object]:
    """`git_commit` of the checkout vcmbench runs from and `git_dirty` (tracked files changed
    since it); both None for an installed wheel, which is no checkout."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_dirty": None}
    changes = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if changes is None else bool(changes)}


def scheduler_job() -> dict[str, str]:
    """The scheduler's job of this process (SLURM's variables that are set), else empty."""
    job = {k.lower(): os.environ[k] for k in SCHEDULER_VARIABLES if os.environ.get(k)}
    if "slurm_job_id" in job:
        job["scheduler"] = "slurm"
    return job


def read_run_info(run_dir: Path) -> dict:
    """A run folder's run.json, or {} where there is none yet or it is unreadable (a run killed while
    writing it): callers treat both as "not known to have finished"."""
    path = Path(run_dir) / "run.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def provenance(shard: str | None) -> dict[str, object]:
    """run.json's provenance block: commit, host, job and the shard this run coded (None: all)."""
    return {**git_state(), "host": socket.gethostname(), "pid": os.getpid(), "job": scheduler_job(), "shard": shard}
