"""One training loop for every trainer (the CI detector, the learned codecs, the joint predictor).

A trainer supplies what is its own: a step function (one optimisation step at a given step
index, returning the values to log, `loss` first), the modules and optimizers whose state makes
a resume exact, and its schedule. The loop does the rest the same way for all of them:

- the learning rate through `torch.optim.lr_scheduler.LambdaLR` (linear warmup, then cosine
  decay to a fraction of the base rate, or constant), optionally driven by a time limit when it
  is nearer than the step limit;
- resume from `train_state.pt` when it was written by the same configuration (`config_key`);
- a CSV log (`step, lr, <fields>, elapsed_s`, means over `log_every` steps) and a progress bar;
- periodic hooks (validation) and train-state checkpoints;
- `finish`: the run json written beside the outputs, the train state removed, outputs copied
  to `copy_to`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vcmbench.atomic import torch_save
from vcmbench.errors import ConfigError
from vcmbench.train_state import matching_state

STATE_NAME = "train_state.pt"


@dataclass(frozen=True)
class Schedule:
    """Learning-rate factor of a step: `0.1 + 0.9 * step / warmup` during the warmup, then a cosine
    from 1 to `final_fraction` over the remaining steps (or over the time limit, whichever is
    nearer); `kind: constant` keeps 1 after the warmup."""

    total_steps: int
    warmup_steps: int = 0
    final_fraction: float = 0.1
    kind: str = "cosine"

    def __post_init__(self):
        if self.kind not in ("cosine", "constant"):
            raise ConfigError(f"optimizer.schedule={self.kind!r}: choose cosine or constant")

    @classmethod
    def of(cls, optimizer_cfg, steps: int) -> Schedule:
        """The schedule a trainer's `optimizer:` node describes (warmup_steps, final_lr_fraction, schedule)."""
        o = optimizer_cfg
        return cls(
            steps,
            int(o.get("warmup_steps", 0)),
            float(o.get("final_lr_fraction", 0.1)),
            str(o.get("schedule", "cosine")),
        )

    def factor(self, step: int, time_fraction: float = 0.0) -> float:
        warm = self.warmup_steps
        if warm > 0 and step < warm:
            return 0.1 + 0.9 * step / warm
        if self.kind == "constant":
            return 1.0
        frac = min(1.0, max((step - warm) / max(1, self.total_steps - warm), time_fraction))
        lo = self.final_fraction
        return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * frac))


@dataclass
class LoopResult:
    steps_done: int
    stopped_by_time: bool
    train_s: float
    cpu_s: float
    losses: list[float] = field(default_factory=list)  # every step's loss in this process


def run_loop(
    step_fn: Callable[[int], dict[str, float]],
    *,
    out: Path,
    steps: int,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    state: dict[str, object],
    config_key: str,
    resume: bool,
    log_fields: Sequence[str],
    log_name: str = "train.csv",
    log_every: int = 10,
    checkpoint_every: int = 0,
    hooks: Sequence[tuple[int, Callable[[int], None]]] = (),
    max_seconds: float | None = None,
    progress: bool = False,
    desc: str = "train",
) -> LoopResult:
    """Run `step_fn(step)` for the steps not done yet; `state` names every object with a
    state_dict (modules, optimizers) that a resume must restore."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    clock = {"t0": started, "cpu0": time.process_time()}

    def time_fraction() -> float:
        return (time.perf_counter() - clock["t0"]) / max_seconds if max_seconds else 0.0

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule.factor(step, time_fraction()))
    start = 0
    state_path = out / STATE_NAME
    saved = matching_state(state_path, config_key, resume)
    if saved is not None:
        for name, obj in state.items():
            obj.load_state_dict(saved[name])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        start = int(saved["step"])
        clock["t0"] -= float(saved["elapsed_s"])
        clock["cpu0"] -= float(saved.get("cpu_s", 0.0))

    log_path = out / log_name
    header = ["step", "lr", *log_fields, "elapsed_s"]
    if start == 0 or not log_path.is_file():
        with log_path.open("w", newline="") as f:
            csv.writer(f).writerow(header)
    log_every = max(1, int(log_every))
    losses: list[float] = []
    window: list[dict[str, float]] = []
    stopped_by_time = False
    step = start
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=desc, unit="step", disable=not progress)
    for step in bar:
        if max_seconds is not None and time.perf_counter() - clock["t0"] > max_seconds:
            stopped_by_time = True
            break
        lr = optimizer.param_groups[0]["lr"]
        values = step_fn(step)
        if not math.isfinite(values["loss"]):
            raise ConfigError(f"training diverged at step {step} (loss {values['loss']}); lower optimizer.lr")
        scheduler.step()
        losses.append(values["loss"])
        window.append(values)
        done = step + 1
        if done % log_every == 0 or done == steps:
            mean = {k: sum(v.get(k, math.nan) for v in window) / len(window) for k in log_fields}
            with log_path.open("a", newline="") as f:
                csv.writer(f).writerow(
                    [done, f"{lr:.6g}"]
                    + [f"{mean[k]:.6g}" for k in log_fields]
                    + [f"{time.perf_counter() - clock['t0']:.1f}"]
                )
            bar.set_postfix(loss=f"{mean['loss']:.4g}", lr=f"{lr:.2g}")
            window = []
        for every, hook in hooks:
            if every > 0 and done % every == 0 and done < steps:
                hook(done)
        if checkpoint_every > 0 and done % checkpoint_every == 0 and done < steps:
            torch_save(
                {
                    **{name: obj.state_dict() for name, obj in state.items()},
                    "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "step": done,
                    "elapsed_s": time.perf_counter() - clock["t0"],
                    "cpu_s": time.process_time() - clock["cpu0"],
                    "config_key": config_key,
                },
                state_path,
            )
    bar.close()
    return LoopResult(
        steps_done=step if stopped_by_time else steps,
        stopped_by_time=stopped_by_time,
        train_s=time.perf_counter() - clock["t0"],
        cpu_s=time.process_time() - clock["cpu0"],
        losses=losses,
    )


def training_device(name: str) -> torch.device:
    """device=auto (CUDA where there is one) | cpu | cuda; one line where CUDA is asked for and absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda: no CUDA device here; use device=auto or device=cpu")
    return torch.device(name)


#: the feature-codec trainers' settings that say how a training runs, not what it trains (where it
#: logs, how often it saves, how long it may take): a resumed run may change them
RUN_ONLY_KEYS = (
    "resume",
    "progress",
    "copy_to",
    "threads",
    "log_every",
    "val_every",
    "checkpoint_every",
    "max_minutes",
    "results_dir",
)


def config_key(config: dict, ignore: Sequence[str]) -> str:
    """A run's configuration without the keys that do not change its result: what a saved
    train state must match to be resumed."""
    return json.dumps({k: v for k, v in config.items() if k not in ignore}, sort_keys=True, default=str)


def finish(out: Path, info: dict, info_name: str, outputs: Sequence[Path], copy_to: str | None) -> dict:
    """Write the run json beside the outputs, drop the train state, copy outputs + json to copy_to
    (relative: to the working directory)."""
    out = Path(out)
    (out / info_name).write_text(json.dumps(info, indent=2) + "\n")
    (out / STATE_NAME).unlink(missing_ok=True)
    if copy_to:
        dest = Path(str(copy_to)).expanduser()
        dest.mkdir(parents=True, exist_ok=True)
        for path in [*outputs, out / info_name]:
            shutil.copyfile(path, dest / Path(path).name)
        info["copied_to"] = str(dest)
    return info


@contextlib.contextmanager
def training_arithmetic(threads: int | None) -> Iterator[None]:
    """A training's torch settings: `threads` intra-op threads (None/0: as they are) and deterministic
    algorithms (warn only); both restored afterwards, so a training inside tests or a notebook leaves
    the process as it found it."""
    before = torch.get_num_threads()
    det, det_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if threads:
            torch.set_num_threads(int(threads))
        torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.set_num_threads(before)
        torch.use_deterministic_algorithms(det, warn_only=det_warn)


def decay_optimizer(params: Iterable[torch.nn.Parameter], opt) -> torch.optim.Optimizer:
    """AdamW or SGD (`opt.name`) with weight decay on the weights of more than one dimension and
    none on biases and norms; a ConfigError naming optimizer.name for another optimizer."""
    from vcmbench.errors import ConfigError

    params = list(params)
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": float(opt.weight_decay)}, {"params": no_decay, "weight_decay": 0.0}]
    if opt.name == "adamw":
        return torch.optim.AdamW(groups, lr=float(opt.lr), betas=(0.9, 0.999))
    if opt.name == "sgd":
        return torch.optim.SGD(groups, lr=float(opt.lr), momentum=float(opt.momentum))
    raise ConfigError(f"optimizer.name={opt.name!r}: choose 'adamw' or 'sgd'")
