"""Every bad input the project guards against, in one table: each gives exit code 2 (or, for a
payload, a PayloadError) and one line that names the setting or file at fault.

Kinds: config values, datasets, checkpoints, external binaries, records, other commands' inputs
(command lines, each through `vcmbench.cli.main` in this process: the same code `python -m vcmbench`
runs, without a torch import per case; tests/test_command_line.py runs a few as real processes) and
payloads (a bad payload costs its item and rate point, not the sweep).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from vcmbench.cli import main
from vcmbench.errors import PayloadError

REPO = Path(__file__).resolve().parents[1]
QUICK = ["dataset.count=1", "sweep.workers=1", "sweep.progress=false", "report=false"]

# (kind, arguments after `vcmbench`, what the one line must name); {tmp} is a fresh folder
COMMAND_LINE_CASES = [
    ("config", ["run", "sweep.workers=abc"], "sweep.workers='abc'"),
    ("config", ["run", "sweep.threads=0"], "sweep.threads=0"),
    ("config", ["run", "determinism=sometimes"], "determinism='sometimes'"),
    ("config", ["run", "sweep.repair=maybe"], "sweep.repair='maybe'"),
    ("config", ["run", "complexity=often"], "complexity='often'"),
    ("config", ["run", "task_metric=pose"], "task_metric='pose'"),
    ("config", ["run", "model.split=neck"], "model.split='neck'"),
    (
        "config",
        [
            "train",
            "codec=learned_interleaved_paper",
            "quality=1",
            "hydra.run.dir={tmp}/train",
            "+codec.learned_interleaved_paper.net_by_quality.1.width=3",
        ],
        "codec.learned_interleaved_paper.net_by_quality.1",
    ),
    ("config", ["run", "bootstrap.resamples=-1"], "bootstrap.resamples=-1"),
    ("config", ["run", "bootstrap.level=2"], "bootstrap.level=2"),
    ("config", ["run", "codec=no_such_codec"], "no_such_codec"),
    ("config", ["run", "codec=anchor_vvc", "codec.anchor_vvc.rates=[99]"], "qp=99"),
    ("config", ["run", "codec=anchor_vvc", "codec.anchor_vvc.sequence_gop=sideways"], "sequence_gop"),
    ("config", ["run", "codec=anchor_vvc", "codec.anchor_vvc.quantiser.bits=12"], "bits=12"),
    ("config", ["run", "codec=anchor_vvc", "codec.anchor_vvc.no_such_key=1"], "no_such_key"),
    (
        "config",
        ["run", "dataset=synthetic_video", "dataset.sequences=[{name: a, frames: 0}]"],
        "dataset.sequences[0].frames",
    ),
    (
        "dataset",
        [
            "run",
            "dataset=coco_folder",
            "dataset.root={tmp}/nowhere",
            "dataset.annotation_file=a.json",
            "dataset.image_dir=img",
        ],
        "nowhere",
    ),
    ("dataset", ["run", "dataset=mot_folder", "dataset.root={tmp}"], "seqinfo.ini"),
    ("dataset", ["run", "dataset=sfu_hw_objects", "dataset.root={tmp}/nowhere"], "nowhere"),
    ("dataset", ["run", "dataset=sfu_hw_objects"], "dataset.root"),
    ("checkpoint", ["run", "model.weights={tmp}/missing.pt"], "missing.pt"),
    ("checkpoint", ["run", "codec=learned_interleaved", "codec.learned_interleaved.checkpoint_dir={tmp}/none"], "none"),
    (
        "binary",
        ["run", "codec=anchor_vvc", "codec.anchor_vvc.backend.ffmpeg={tmp}/ffmpeg"],
        "codec.anchor_vvc.backend.ffmpeg",
    ),
    (
        "binary",
        ["run", "codec=anchor_vtm", "codec.anchor_vtm.meta.in_default_run=true"],
        "codec.anchor_vtm.backend.encoder_app",
    ),
    ("records", ["run", "codec=raw", "hydra.run.dir={tmp}/damaged"], "records.jsonl: line 1"),
    ("command", ["report", "{tmp}/no_run"], "no_run"),
    ("command", ["regress", "{tmp}/no_run", "--reference", "anchors/ci/points.csv"], "no_run"),
    ("command", ["regress", "{tmp}", "--reference", "{tmp}/no_reference.csv"], "no_reference.csv"),
    ("command", ["export", "--format", "cttc", "{tmp}/no_run"], "no_run"),
    ("command", ["bdrate", "{tmp}/a.csv", "{tmp}/b.csv"], "a.csv"),
]
ONE_ERROR_LINE = re.compile(r"^vcmbench( [a-z-]+)?: error: ")


def _argv(args: list[str], tmp: Path) -> list[str]:
    argv = [a.replace("{tmp}", str(tmp)) for a in args]
    if argv[0] == "run":
        other_dataset = any(a.startswith("dataset=") for a in argv)  # only synthetic_val has `count`
        argv += [
            q
            for q in QUICK
            if q.split("=")[0] not in " ".join(argv) and not (other_dataset and q.startswith("dataset."))
        ]
        if not any(a.startswith("hydra.run.dir=") for a in argv):
            argv.append(f"hydra.run.dir={tmp}/run")
    return argv


def _exit_code(argv: list[str]) -> int:
    """`vcmbench ARGV` in this process: main's return value, or the status an error inside the
    Hydra app exits with."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


@pytest.mark.timeout(300)
def test_every_bad_command_line_input_gives_exit_2_and_one_line_naming_it(tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(REPO)  # relative paths of the cases (anchors/ci/points.csv) as from a checkout
    failures = []
    for i, (kind, args, named) in enumerate(COMMAND_LINE_CASES):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        if "hydra.run.dir={tmp}/damaged" in args:  # a records file damaged before its last line
            (folder / "damaged").mkdir()
            (folder / "damaged" / "records.jsonl").write_text("{not a record\n{}\n")
        code = _exit_code(_argv(args, folder))
        err = capfd.readouterr().err  # what reached the process's stderr, logging included
        lines = [ln for ln in err.splitlines() if ln.strip()]
        ok = code == 2 and len(lines) == 1 and ONE_ERROR_LINE.match(lines[0]) and named in lines[0]
        if not ok:
            failures.append(f"{kind} {args}: exit {code}, stderr {err[-600:]!r}")
    assert not failures, "\n".join(failures)


def _payload_cases(codec_from_yaml, real_features, val_images):
    """(codec, what it was given to encode) for one codec of each payload family."""
    feats = real_features(channels=16)
    image = val_images[0] if isinstance(val_images[0], torch.Tensor) else val_images[0].image
    return [
        (codec_from_yaml("raw"), feats),
        (codec_from_yaml("anchor_vvc", rates=[37]), feats),
        (codec_from_yaml("pack_tile", rates=[37]), feats),
        (codec_from_yaml("image_vvc", rates=[37]), image),
    ]


@pytest.mark.timeout(300)
def test_every_bad_payload_is_a_payload_error_naming_its_codec(codec_from_yaml, real_features, val_images):
    failures = []
    for codec, item in _payload_cases(codec_from_yaml, real_features, val_images):
        payload = codec.encode(item, codec.rates[0])
        flipped = bytearray(payload)
        flipped[0] ^= 0xFF  # another codec's tag
        for what, bad in (
            ("truncated", payload[: len(payload) // 2]),
            ("header only", payload[:8]),
            ("empty", b""),
            ("foreign tag", bytes(flipped)),
        ):
            try:
                codec.decode(bad)
            except PayloadError as exc:
                if not str(exc).startswith(codec.name) or "\n" in str(exc):
                    failures.append(f"{codec.name} {what}: message {exc}")
            except Exception as exc:  # noqa: BLE001 - any other exception is the failure this test looks for
                failures.append(f"{codec.name} {what}: {type(exc).__name__}: {exc}")
            else:
                failures.append(f"{codec.name} {what}: decoded without an error")
    assert not failures, "\n".join(failures)
