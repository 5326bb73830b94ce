"""The run's codec jobs: each selected codec built once, with its setup hash, role and whether it
codes another network's features than it was trained for; and the run's description of them.

The setup hash ties records to the settings that made them (a retrained checkpoint or another
determinism mode is another setup), so a resumed sweep never mixes records of two setups.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vcmbench.aggregate import CodecDescription, RunDescription
from vcmbench.codecs.base import Codec
from vcmbench.codecs.sequence import describe_sequence_coding
from vcmbench.config import (
    build,
    codec_allow_foreign,
    fingerprint,
    selected_codec_configs,
    selected_codec_roles,
)
from vcmbench.domain import DomainCheck, check_codec
from vcmbench.errors import ConfigError
from vcmbench.paths import file_sha256
from vcmbench.points import CodecLabel
from vcmbench.settings import RunSettings
from vcmbench.vision.base import SplitDetector


@dataclass
class CodecJob:
    codec: Codec
    setup: str
    role: str = "test"  # the yaml's meta.role; travels in points.csv
    foreign: bool = False  # a trained codec coding another network's features (allow_foreign)


def codec_label(job: CodecJob, sequences: bool) -> CodecLabel:
    """The job's role and encoder for the points table; a sequence run adds the GOP it codes with."""
    encoder = job.codec.describe_encoder()
    if sequences:
        encoder += f"; {describe_sequence_coding(job.codec)}"
    return CodecLabel(job.role, encoder)


def file_digest(path: Path) -> str:
    """sha256 of a file, cached by (path, size, mtime) for the run's lifetime."""
    st = Path(path).stat()
    return _file_digest(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def build_jobs(cfg: DictConfig, verdict: DomainCheck | None = None) -> list[CodecJob]:
    """The run's codecs, each built once, with its setup hash and role. A trained codec made for
    another network than the run's is refused, left out or marked (vcmbench.domain); `verdict`
    collects what was decided."""
    # exact features are other features: records of a loose run are not reused (and vice versa)
    mode = RunSettings.from_config(cfg).determinism
    base = fingerprint(cfg.model, cfg.dataset.name, *(["determinism=exact"] if mode == "exact" else []))
    verdict = verdict if verdict is not None else DomainCheck()
    explicit = bool(cfg.get("codec"))
    allowed = codec_allow_foreign(cfg)
    jobs = []
    roles = selected_codec_roles(cfg)
    for name, node in selected_codec_configs(cfg).items():
        codec_settings = OmegaConf.masked_copy(node, [k for k in node if k != "rates"])
        codec = build(node)
        if not check_codec(name, codec, cfg.model, explicit, allowed.get(name, False), verdict):
            continue
        contents = [file_digest(p) for p in codec.files()]  # retrained checkpoints are other setups
        setup = fingerprint(base, codec_settings, *([contents] if contents else []))
        jobs.append(CodecJob(codec, setup, roles.get(name, "test"), name in verdict.foreign))
    if not jobs:
        raise ConfigError(f"no codec left to run: {verdict.note() or 'none selected'}")
    return jobs


def describe_run(detector: SplitDetector, jobs: list[CodecJob], sequences: bool) -> RunDescription:
    """What the run's tables need of its model and codecs (run.json's `description`)."""
    codecs = []
    for job in jobs:
        label = codec_label(job, sequences)
        codecs.append(
            CodecDescription(
                job.codec.name,
                label.role,
                label.encoder,
                job.setup,
                tuple(rp.label for rp in job.codec.rates),
                job.foreign,
            )
        )
    return RunDescription(detector.name, getattr(detector, "split", "fpn"), tuple(codecs))
