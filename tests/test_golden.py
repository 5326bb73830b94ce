"""Golden digests (tests/expected/golden.json, made by `vcmbench golden --write`): the exact mode's
features, payloads, decoded features and detections for 3 default scenes must be reproduced, to the
bit, on whatever machine the suite runs; a difference names the first stage that diverged."""

from __future__ import annotations

import copy

import pytest
import torch
from hydra.utils import instantiate

from tests.assets import REPO
from vcmbench import golden
from vcmbench.config import compose_config

GOLDEN = REPO / "tests" / "expected" / "golden.json"


@pytest.fixture(scope="module")
def expected() -> dict:
    return golden.read(GOLDEN)


@pytest.mark.timeout(600)
def test_this_machine_reproduces_every_golden_digest(expected):
    assert set(expected["models"]) == set(golden.MODELS)
    codecs = next(iter(expected["models"][golden.CODEC_MODEL].values()))["codecs"]
    assert len(codecs) >= 10  # every default codec at one rate point
    actual = golden.compute()
    problem = golden.diverged(expected, actual)
    assert problem is None, problem


def _subset(expected: dict, codec: str) -> dict:
    """The golden entries of ci_frcnn's first scene with one codec."""
    scene, entry = next(iter(expected["models"]["ci_frcnn"].items()))
    entry = copy.deepcopy(entry)
    entry["codecs"] = {codec: entry["codecs"][codec]}
    return {"machine": expected["machine"], "models": {"ci_frcnn": {scene: entry}}}


def _perturbed(parameter: str):
    detector = instantiate(compose_config("config", []).model)
    with torch.no_grad():
        dict(detector.model.named_parameters())[parameter].view(-1)[0] += 1e-3
    return detector


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "parameter, stage",
    [("backbone.body.layer2.0.0.weight", "the front"), ("roi_heads.box_predictor.cls_score.weight", "the back")],
)
def test_a_perturbed_weight_is_named_as_the_first_stage_that_diverged(expected, parameter, stage):
    want = _subset(expected, "anchor_vvc")
    actual = golden.compute(
        {"ci_frcnn": []}, scenes=1, codecs=["anchor_vvc"], detectors={"ci_frcnn": _perturbed(parameter)}
    )
    problem = golden.diverged(want, actual)
    assert problem is not None and f"first stage that diverged: {stage} (ci_frcnn, scene" in problem
    assert (
        "Computed on" in problem
        and "the golden file was made on" in problem
        and actual["machine"]["cpu_model"] in problem
    )
