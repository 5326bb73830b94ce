"""A run folder survives what happens to sweeps: SIGKILL at any moment, a second run on the same
folder, a records file damaged in the middle."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vcmbench.records import RecordsCorrupt, RecordStore, RunLock

REPO = Path(__file__).resolve().parents[1]
# Two synthetic scenes, an external codec (VVC through ffmpeg) and one with networks around an external
# codec (the hybrid: reduction, VVC, restoration), three rates each: 12 records, enough for the kills
# below to land before, during and between them.
SWEEP = [
    "dataset.count=2",
    "codec=[anchor_vvc,hybrid_vvc]",
    "codec.anchor_vvc.rates=[37,41,45]",
    "codec.hybrid_vvc.rates=[32,37,42]",
]
TINY = ["dataset.count=2", "codec=raw"]
COMMON = ["sweep.workers=1", "report=false", "sweep.progress=false", "fidelity=false", "complexity=false"]
TIME_FIELDS = {"enc_s", "dec_s", "front_s", "back_s", "workers"}


def _run(run_dir: Path, *overrides: str, wait: bool = True, timeout: float = 600):
    cmd = [sys.executable, "-m", "vcmbench", "run", *COMMON, *(overrides or SWEEP), f"hydra.run.dir={run_dir}"]
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _records(run_dir: Path) -> tuple[dict, int]:
    """key -> the record's non-time fields, and the number of lines (duplicates would show)."""
    lines = [json.loads(x) for x in (run_dir / "records.jsonl").read_text().splitlines() if x.strip()]
    out = {}
    for r in lines:
        r["extra"] = {k: v for k, v in r["extra"].items() if not k.endswith("_s")}
        out[(r["image_id"], r["codec"], r["rate"])] = {k: v for k, v in r.items() if k not in TIME_FIELDS}
    return out, len(lines)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    reference = _run(tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr[-2000:]
    want, n_want = _records(tmp_path / "reference")
    assert n_want == len(want) == 2 * 6
    rng = random.Random(20261201)
    killed = tmp_path / "killed"
    records = killed / "records.jsonl"

    def written() -> int:
        return len(records.read_text().splitlines()) if records.is_file() else 0

    kills, finished, mid_sweep, rounds = 0, False, 0, 0
    while (kills < 5 or mid_sweep < 2) and not finished and rounds < 12:
        rounds += 1
        proc = _run(killed, wait=False)
        if rounds % 2:  # a moment after start: during the imports and the model build, as often as not
            deadline = time.monotonic() + rng.uniform(0.5, 6.0)
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
        else:  # a moment while records are being written: after a random number of them (any machine speed)
            target = rng.randint(written() + 1, n_want - 1) if written() + 1 < n_want else n_want
            while proc.poll() is None and written() < target:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            before = written()
            proc.send_signal(signal.SIGKILL)
            kills += 1
            mid_sweep += 0 < before < n_want
        finished = proc.wait() == 0
    assert kills >= 5, f"the sweep finished after {kills} kills: make it longer"
    assert mid_sweep >= 2  # some kills hit the sweep while it was writing records, not only its start
    final = _run(killed)
    assert final.returncode == 0, final.stderr[-2000:]
    got, n_got = _records(killed)
    assert n_got == len(got)  # nothing written twice
    assert got == want  # nothing lost, nothing changed


@pytest.mark.timeout(300)
def test_a_second_run_on_a_folder_in_use_fails_at_once_and_a_stale_lock_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom vcmbench.records import RunLock\n"
            f"RunLock({str(run_dir)!r}).acquire()\nprint('locked', flush=True)\ntime.sleep(120)\n",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.perf_counter()
        second = _run(run_dir, *TINY)
        assert second.returncode == 2
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("vcmbench: error:"), second.stderr
        assert f"pid {holder.pid} on {socket.gethostname()}" in lines[0] and str(run_dir) in lines[0]
        assert time.perf_counter() - t0 < 60  # refused before any work, not after the sweep
        assert not (run_dir / "records.jsonl").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder died without releasing anything: its lock file stays, its lock does not
    again = _run(run_dir, *TINY)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (run_dir / "records.jsonl").is_file()


def test_the_lock_excludes_within_one_host(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(Exception, match=r"in use by pid \d+ on"):
            RunLock(tmp_path).acquire()
    RunLock(tmp_path).acquire().release()  # free again once released


def _write_records(path: Path, n: int) -> list[str]:
    lines = [
        json.dumps(
            {
                "image_id": i,
                "codec": "c",
                "rate": "q=1",
                "setup": "s",
                "bytes": 10,
                "pixels": 100,
                "enc_s": 0.0,
                "dec_s": 0.0,
                "front_s": 0.0,
                "back_s": 0.0,
            }
        )
        for i in range(n)
    ]
    path.write_text("".join(x + "\n" for x in lines))
    return lines


def test_a_record_damaged_in_the_middle_names_its_line_and_repair_drops_it(tmp_path):
    path = tmp_path / "records.jsonl"
    lines = _write_records(path, 5)
    lines[2] = lines[2][: len(lines[2]) // 2] + "\x00garbage"
    path.write_text("".join(x + "\n" for x in lines))
    with pytest.raises(RecordsCorrupt, match=r"records\.jsonl: line 3 is not a record .*repair=true"):
        RecordStore(path)
    store = RecordStore(path, repair=True)
    assert sorted(k[0] for k in store.records) == [0, 1, 3, 4]  # image 2 is redone by the run
    store.close()
    assert len(path.read_text().splitlines()) == 4 and RecordStore(path).records


def test_a_torn_last_line_is_still_dropped_without_repair(tmp_path):
    path = tmp_path / "records.jsonl"
    lines = _write_records(path, 3)
    path.write_text("".join(x + "\n" for x in lines[:2]) + lines[2][:15])
    assert sorted(k[0] for k in RecordStore(path).records) == [0, 1]


@pytest.mark.timeout(300)
def test_the_command_line_names_the_damaged_line_and_repair_resumes(tmp_path):
    run_dir = tmp_path / "run"
    first = _run(run_dir, *TINY)
    assert first.returncode == 0, first.stderr[-2000:]
    path = run_dir / "records.jsonl"
    good = path.read_text().splitlines()
    path.write_text("{not json\n" + "".join(x + "\n" for x in good))
    broken = _run(run_dir, *TINY)
    assert broken.returncode == 2 and "line 1 is not a record" in broken.stderr and "--repair" in broken.stderr
    repaired = _run(run_dir, *TINY, "--repair")
    assert repaired.returncode == 0, repaired.stderr[-2000:]
    assert path.read_text().splitlines() == good
    assert os.path.getsize(path) > 0


def _children(pid: int) -> set[int]:
    """Direct children of `pid` (Linux /proc)."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return out


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (an exited orphan waiting for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.timeout(180)
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads children from Linux /proc")
def test_workers_end_when_the_sweep_process_is_killed(tmp_path):
    """SIGKILL of `vcmbench run` mid-sweep leaves no worker coding on: each exits once its parent is gone."""
    cmd = [sys.executable, "-m", "vcmbench", "run", "sweep.workers=2", "report=false", "sweep.progress=false"]
    proc = subprocess.Popen(
        [*cmd, *SWEEP, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: set[int] = set()
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        workers = {c for c in _children(proc.pid) if _is_worker(c)}
        if len(workers) == 2:
            break
        time.sleep(0.2)
    assert len(workers) == 2, "the sweep never started its two workers"
    records = tmp_path / "run" / "records.jsonl"
    while proc.poll() is None and time.monotonic() < deadline and not (records.is_file() and records.stat().st_size):
        time.sleep(0.1)  # killed mid-sweep: the workers are coding, not starting
    assert proc.poll() is None, "the sweep finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_running(w) for w in workers):
        time.sleep(0.2)
    alive = [w for w in workers if _running(w)]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive, f"workers {alive} kept running after their sweep was killed"
