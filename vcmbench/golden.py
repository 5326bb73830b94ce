"""Golden hashes: what the exact mode must compute, to the bit, on any machine.

For a few default scenes `compute` records, stage by stage, sha256 digests of what the pipeline
makes in `determinism=exact`: the scene's pixels, the front's features per level (ci_frcnn, ci_maskrcnn and the
backbone split), the back's detections on them, and for every default codec (and each variant the
default run leaves out, `meta.variant_of`) at one rate point the
payload, the features the receiver gets (decoded, or the receiver's front on a decoded image) and
the back's detections on those. `tests/expected/golden.json` holds them; the suite recomputes them
on whatever machine it runs on, and `diverged` names the first stage that differs (front before
codec before back) with the machine it ran on and the one the file was made on.

Regenerating is a deliberate act, never part of the suite:
`vcmbench golden --write tests/expected/golden.json` (docs/manual.md: Reproducibility, when and why).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from hydra.utils import instantiate

from vcmbench import determinism
from vcmbench.config import all_codec_configs, codec_meta, compose_config, selected_codec_configs
from vcmbench.config import build as build_codec
from vcmbench.types import Detections, Features
from vcmbench.vision.base import SplitDetector

SCENES = 3
#: model label -> the `vcmbench run` overrides that select it; codecs run on the first one only
MODELS = {"ci_frcnn": [], "ci_maskrcnn": ["model=ci_maskrcnn"], "ci_frcnn@backbone": ["model.split=backbone"]}
CODEC_MODEL = "ci_frcnn"
STAGES = ("input", "front", "payload", "decoded", "back", "codec_back")  # pipeline order


def tensor_digest(t: torch.Tensor) -> str:
    t = t.detach().cpu().contiguous()
    return hashlib.sha256(repr((str(t.dtype), tuple(t.shape))).encode() + t.numpy().tobytes()).hexdigest()


def features_digest(features: Features) -> dict[str, str]:
    return {level: tensor_digest(features[level].to(torch.float32)) for level in sorted(features)}


def detections_digest(dets: Detections) -> str:
    h = hashlib.sha256()
    for t in (dets.boxes.to(torch.float32), dets.scores.to(torch.float32), dets.labels.to(torch.int64)):
        h.update(tensor_digest(t).encode())
    if dets.masks is not None:
        h.update(tensor_digest(dets.masks.to(torch.bool)).encode())
    return h.hexdigest()


def golden_codec_names() -> list[str]:
    """Every default codec and every variant the default run leaves out (`meta.variant_of`): the
    digests keep covering the variants, which no default run codes any more."""
    return [
        name
        for name, node in all_codec_configs(include_optional=True).items()
        if codec_meta(node).get("in_default_run", True) or codec_meta(node).get("variant_of")
    ]


def _codecs(overrides: Sequence[str], names: Iterable[str] | None) -> dict:
    names = golden_codec_names() if names is None else list(names)
    cfg = compose_config("config", [*overrides, f"codec=[{','.join(names)}]"])
    return {name: build_codec(node) for name, node in selected_codec_configs(cfg).items()}


def compute(
    models: dict[str, Sequence[str]] | None = None,
    scenes: int = SCENES,
    codecs: Iterable[str] | None = None,
    detectors: dict[str, SplitDetector] | None = None,
) -> dict:
    """The golden digests, computed here in exact mode: {model: {scene: {stage: ...}}} plus the machine.

    `codecs`: codec names (None: every default codec), each at its middle rate point, on CODEC_MODEL.
    `detectors`: prebuilt detectors by model label (a test's perturbed copy), else built from the config.
    """
    models = MODELS if models is None else models
    out: dict = {"machine": determinism.environment("exact"), "models": {}}
    for label, overrides in models.items():
        cfg = compose_config("config", list(overrides))
        dataset = instantiate(cfg.dataset)
        detector = (detectors or {}).get(label) or instantiate(cfg.model)  # built (random init) outside the mode
        built = _codecs(overrides, codecs) if label == CODEC_MODEL else {}
        with determinism.arithmetic("exact"):
            out["models"][label] = {
                str(record.image_id): _scene(dataset, record, detector, built) for record in dataset.records[:scenes]
            }
    return out


def _scene(dataset, record, detector: SplitDetector, codecs: dict) -> dict:
    sample = dataset.load(record)
    front = detector.front(sample.image)
    entry: dict = {
        "input": tensor_digest(sample.image),
        "front": features_digest(front.features),
        "back": detections_digest(detector.back(front.features, front.meta)),
        "codecs": {},
    }
    for name, codec in codecs.items():
        rate = codec.rates[len(codec.rates) // 2]
        codec.prepare(rate)
        payload = codec.transmit_encode(sample.image, front, rate)
        received = codec.transmit_decode(payload, front.meta)
        features, meta = received.features, front.meta
        if features is None:  # an image codec: the receiver runs the front on the decoded image
            at_receiver = detector.front(received.image)
            features, meta = at_receiver.features, at_receiver.meta
        entry["codecs"][name] = {
            "rate": rate.label,
            "payload": hashlib.sha256(payload).hexdigest(),
            "decoded": features_digest(features),
            "codec_back": detections_digest(detector.back(features, meta)),
        }
    return entry


def _machine(info: dict) -> str:
    return (
        f"{info.get('cpu_model', '?')} ({info.get('cpu_count', '?')} CPUs, torch kernels "
        f"{info.get('cpu_capability', '?')}, {info.get('torch_threads', '?')} threads)"
    )


def diverged(expected: dict, actual: dict) -> str | None:
    """None when every digest of `expected` is reproduced; else one line naming the first stage that
    differs (the front, then each codec's payload and decoded features, then the back), where, and
    on which machines."""
    first = None
    rank = {stage: i for i, stage in enumerate(STAGES)}
    for label, scenes in expected["models"].items():
        for scene, want in scenes.items():
            got = actual.get("models", {}).get(label, {}).get(scene)
            if got is None:
                return f"golden: {label} scene {scene} was not computed"
            found = _scene_divergence(want, got)
            if found and (first is None or rank[found[0]] < rank[first[0]]):
                first = (found[0], f"{label}, scene {scene}: {found[1]}")
    if first is None:
        return None
    stage = {
        "input": "the input image (the dataset)",
        "front": "the front",
        "back": "the back",
        "payload": "a codec's encoder",
        "decoded": "a codec's decoder",
        "codec_back": "the back (on decoded features)",
    }[first[0]]
    return (
        f"golden digests differ; first stage that diverged: {stage} ({first[1]}). Computed on "
        f"{_machine(actual.get('machine', {}))}; the golden file was made on {_machine(expected.get('machine', {}))}"
    )


def _scene_divergence(want: dict, got: dict) -> tuple[str, str] | None:
    if got.get("input") != want.get("input"):
        return "input", "the scene's pixels"
    for level, digest in want["front"].items():
        if got["front"].get(level) != digest:
            return "front", f"level {level}"
    for name, codec in want["codecs"].items():
        mine = got["codecs"].get(name)
        if mine is None:
            return "payload", f"codec {name} was not run"
        if mine["payload"] != codec["payload"]:
            return (
                "payload",
                f"codec {name} {codec['rate']}: payload sha256 {mine['payload'][:12]} != {codec['payload'][:12]}",
            )
        for level, digest in codec["decoded"].items():
            if mine["decoded"].get(level) != digest:
                return "decoded", f"codec {name} {codec['rate']}: decoded {level}"
    if got["back"] != want["back"]:
        return "back", "detections on the front's features"
    for name, codec in want["codecs"].items():
        if got["codecs"][name]["codec_back"] != codec["codec_back"]:
            return "codec_back", f"detections on codec {name}'s decoded features"
    return None


def write(path: str | Path, golden: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")


def read(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def golden_main(argv: list[str]) -> int:
    """`vcmbench golden [--write PATH | --check PATH]`: recompute the digests here; --check compares with a
    golden file (exit 1 and the first diverging stage on a difference), --write replaces the file."""
    import argparse

    parser = argparse.ArgumentParser(prog="vcmbench golden", description=golden_main.__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", metavar="PATH", help="write the digests computed here to PATH (a deliberate act)")
    group.add_argument("--check", metavar="PATH", help="compare the digests computed here with PATH")
    args = parser.parse_args(argv)
    if args.check and not Path(args.check).is_file():
        from vcmbench.errors import ConfigError

        raise ConfigError(f"--check {args.check}: no such golden file; make one with `vcmbench golden --write PATH`")
    actual = compute()
    if args.write:
        write(args.write, actual)
        print(f"golden digests written to {args.write} on {_machine(actual['machine'])}")
        return 0
    problem = diverged(read(args.check), actual)
    print(problem or f"golden digests reproduced on {_machine(actual['machine'])}")
    return 1 if problem else 0
