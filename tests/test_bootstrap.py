"""Per-item matching aggregated under weights, and the paired bootstrap of BD-rate built on it.

The ground truth is the 12 real COCO images of tests/data/coco-mini (102 boxes, one crowd);
detections are the boxes jittered, rescored and padded with false positives, seeded, so every
case is deterministic and the evaluators see realistic overlaps, misses and duplicates.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.assets import COCO_MINI_JSON
from vcmbench.bootstrap import RunItems, bootstrap_bd, bootstrap_pair, item_points, resample_weights
from vcmbench.metrics.detection import coco_ap, oid_map50
from vcmbench.metrics.item_matches import match_items
from vcmbench.records import Record

GT = json.loads(COCO_MINI_JSON.read_text())
IDS = sorted(im["id"] for im in GT["images"])


def fake_detections(noise: float, seed: int, ids=IDS) -> list[dict]:
    """Each ground-truth box moved by `noise` of its size, kept with probability 1 - noise/2,
    plus false positives; scores fall with the jitter, all distinct."""
    rng = np.random.default_rng(seed)
    dets = []
    for a in GT["annotations"]:
        if a["image_id"] not in ids or rng.random() < noise / 2:
            continue
        x, y, w, h = a["bbox"]
        j = rng.normal(0, noise, 4) * [w, h, w, h]
        dets.append(
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "bbox": [x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3])],
                "score": float(np.clip(1 - noise - abs(rng.normal(0, 0.2)), 0.01, 0.99)),
            }
        )
    for image_id in ids:
        for _ in range(int(rng.integers(0, 4))):
            cat = GT["categories"][int(rng.integers(0, len(GT["categories"])))]["id"]
            dets.append(
                {
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": list(rng.uniform(0, 300, 4) + [0, 0, 20, 20]),
                    "score": float(rng.uniform(0.01, 0.6)),
                }
            )
    for k, d in enumerate(dets):  # distinct scores: ties are the evaluators' own business, tested elsewhere
        d["score"] = round(d["score"], 6) + k * 1e-9
    return dets


def duplicated(dets: list[dict], counts: dict[int, int]) -> tuple[dict, list[dict]]:
    """Ground truth and detections with image i present counts[i] times (copies get new ids)."""
    images, anns, out, next_id = [], [], [], 10**7
    for im in GT["images"]:
        for copy in range(counts.get(im["id"], 0)):
            new = im["id"] if copy == 0 else next_id + copy * 1000 + im["id"] % 1000
            images.append({**im, "id": new})
            anns += [
                {**a, "image_id": new, "id": len(anns) + n + 1}
                for n, a in enumerate(x for x in GT["annotations"] if x["image_id"] == im["id"])
            ]
            out += [{**d, "image_id": new} for d in dets if d["image_id"] == im["id"]]
    return {"images": images, "annotations": anns, "categories": GT["categories"]}, out


@pytest.mark.parametrize("metric, evaluator", [("coco", coco_ap), ("oid", oid_map50)])
@pytest.mark.parametrize("noise", [0.05, 0.3])
def test_each_item_once_gives_the_evaluators_number_to_the_last_bit(metric, evaluator, noise):
    dets = fake_detections(noise, seed=1)
    got = match_items(metric, GT, dets, IDS).score()
    want = evaluator(GT, dets, IDS)
    assert float(got["map"][0]) == want["map"] and float(got["ap50"][0]) == want["ap50"]


@pytest.mark.parametrize("metric, evaluator", [("coco", coco_ap), ("oid", oid_map50)])
def test_a_weight_is_the_item_drawn_that_many_times(metric, evaluator):
    """Weights (2, 0, 3, 1, ...) score exactly like a dataset holding those copies of the images."""
    dets = fake_detections(0.15, seed=2)
    matches = match_items(metric, GT, dets, IDS)
    rng = np.random.default_rng(5)
    for _ in range(3):
        counts = {i: int(c) for i, c in zip(IDS, rng.integers(0, 4, len(IDS)))}
        counts[IDS[0]] = max(1, counts[IDS[0]])
        gt, copies = duplicated(dets, counts)
        want = evaluator(gt, copies)
        got = matches.score(np.array([[counts[i] for i in IDS]], dtype=float))
        assert float(got["map"][0]) == pytest.approx(want["map"], abs=1e-9)
        assert float(got["ap50"][0]) == pytest.approx(want["ap50"], abs=1e-9)


def test_weights_are_draws_with_replacement_and_the_seed_fixes_them():
    w = resample_weights(12, 200, seed=3)
    assert w.shape == (200, 12) and (w.sum(axis=1) == 12).all() and (w >= 0).all()
    assert np.array_equal(w, resample_weights(12, 200, seed=3))
    assert not np.array_equal(w, resample_weights(12, 200, seed=4))
    assert abs(w.mean() - 1.0) < 1e-12 and (w == 0).mean() == pytest.approx((11 / 12) ** 12, abs=0.03)


# ------------------------------------------------------------------------------- BD intervals

NOISES = [0.30, 0.18, 0.10, 0.05, 0.02]  # five rate points, from coarse to fine


def records(codec: str, bytes_per_image, noise_of_point=NOISES, seed: int = 0) -> list[Record]:
    """One record per image and point: bytes as given (image size times the point's bpp), the
    detections of that point's jitter (the same seeds for every codec: same detections)."""
    out = []
    for p, noise in enumerate(noise_of_point):
        dets = fake_detections(noise, seed=seed + p)
        for im in GT["images"]:
            rows = [[*d["bbox"], d["score"], d["category_id"]] for d in dets if d["image_id"] == im["id"]]
            out.append(
                Record(
                    im["id"],
                    codec,
                    f"q={p}",
                    "s",
                    int(bytes_per_image(p, im)),
                    im["width"] * im["height"],
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                    detections=rows,
                )
            )
    return out


def run_items(*codec_records) -> RunItems:
    recs = [r for rs in codec_records for r in rs]
    return RunItems("coco_mini", "m", IDS, item_points(recs, "coco", COCO_MINI_JSON, IDS))


def bits(p, im, scale=1.0):
    return 2 * int(scale * 1000 * (1.6**p) * (1 + (im["id"] % 7) / 10))  # even; images differ in cost


def test_identical_records_give_zero_with_an_interval_of_width_zero():
    items = run_items(records("anchor", bits), records("same", bits))
    (r,) = bootstrap_bd(items, "anchor", ["same"], n_resamples=200, seed=0)
    assert r.ok and r.estimate == 0.0 and r.lo == 0.0 and r.hi == 0.0 and r.median == 0.0
    assert r.n_valid == 200 and r.p_below_0 == 0.0


def test_half_the_bytes_on_every_image_is_minus_50_percent_exactly():
    items = run_items(records("anchor", bits), records("half", lambda p, im: bits(p, im) / 2))
    (r,) = bootstrap_bd(items, "anchor", ["half"], n_resamples=200, seed=0)
    assert r.estimate == pytest.approx(-50.0, abs=1e-9)
    assert r.lo == pytest.approx(-50.0, abs=1e-9) and r.hi == pytest.approx(-50.0, abs=1e-9)
    assert r.p_below_0 == 1.0


def test_real_differences_give_a_real_interval_and_the_seed_reproduces_it():
    """A codec whose bits move per image around the anchor's: a nonzero width, the same for the
    same seed, another for another seed; the estimate is the full set's BD-rate."""
    rng = np.random.default_rng(0)
    factor = {im["id"]: float(rng.uniform(0.6, 1.2)) for im in GT["images"]}
    items = run_items(records("anchor", bits), records("mixed", lambda p, im: bits(p, im) * factor[im["id"]], seed=100))
    a = bootstrap_bd(items, "anchor", ["mixed"], n_resamples=300, seed=7)[0]
    b = bootstrap_bd(items, "anchor", ["mixed"], n_resamples=300, seed=7)[0]
    c = bootstrap_bd(items, "anchor", ["mixed"], n_resamples=300, seed=8)[0]
    assert a.ok and a.hi - a.lo > 1.0 and a.lo < a.median < a.hi
    assert (a.lo, a.hi, a.median, a.p_below_0) == (b.lo, b.hi, b.median, b.p_below_0)
    assert (a.lo, a.hi) != (c.lo, c.hi)
    from vcmbench.metrics.bd import bd_rate

    curve = {
        c: sorted((float(p.values(None)[0][0]), float(p.values(None)[1][0])) for p in items.curve(c))
        for c in ("anchor", "mixed")
    }
    assert a.estimate == pytest.approx(bd_rate(*zip(*curve["anchor"]), *zip(*curve["mixed"])), abs=1e-12)


def test_too_few_points_is_said_not_computed():
    items = run_items(records("anchor", bits), records("short", bits, NOISES[:3]))
    weights = resample_weights(len(IDS), 10, 0)
    r = bootstrap_pair(items.curve("short"), items.curve("anchor"), weights)
    assert not r.ok and "3 rate point(s), BD-rate needs 4" in r.reason


# ------------------------------------------------------------------ resamples without a BD-rate

SATURATING = [0.30, 0.10, 0.05, 0.045, 0.04]  # the top three points' mAP close: a draw can reorder them


@pytest.fixture(scope="module")
def saturating():
    """An anchor and a codec (0.8 x its bytes, other detections) whose curves saturate: on some
    draws of the 12 images a top point's mAP falls below a cheaper one's and the pareto rule
    leaves a curve with 3 points."""
    return run_items(
        records("vtm", bits, SATURATING),
        records("sat", lambda p, im: bits(p, im) * 0.8, SATURATING, seed=100),
    )


def _pareto_counts(items: RunItems, weights: np.ndarray) -> dict[str, int]:
    """Brute force: each draw's curves rebuilt point by point and put through the report's pareto
    rule (analysis.pareto_front on a points table), the cause written out by hand."""
    import pandas as pd

    from vcmbench.analysis import pareto_front
    from vcmbench.metrics.bd import bd_rate

    drawn = {c: [p.values(weights) for p in items.curve(c)] for c in ("vtm", "sat")}
    causes: dict[str, int] = {}
    for b in range(weights.shape[0]):
        fronts = {}
        for c, values in drawn.items():
            table = pd.DataFrame({"bpp": [v[0][b] for v in values], "map": [v[1][b] for v in values]})
            fronts[c] = pareto_front(table)[0]
        kept = {c: len(f) for c, f in fronts.items()}
        short = [f"{who} kept {kept[c]}" for c, who in (("vtm", "anchor vtm"), ("sat", "sat")) if kept[c] < 4]
        if short:
            cause = " and ".join(short) + " < 4 points after the pareto rule"
        else:
            a, t = fronts["vtm"], fronts["sat"]
            try:
                bd_rate(a.bpp, a["map"], t.bpp, t["map"])
                continue
            except Exception as exc:  # noqa: BLE001 - any other failure would be a cause this case does not expect
                cause = f"unexpected: {exc}"
        causes[cause] = causes.get(cause, 0) + 1
    return causes


def test_draws_without_a_bd_rate_are_counted_by_cause_and_the_monotonic_fit_keeps_them(saturating):
    n, seed = 300, 1
    (pareto,) = bootstrap_bd(saturating, "vtm", ["sat"], n_resamples=n, seed=seed)
    (monotonic,) = bootstrap_bd(saturating, "vtm", ["sat"], n_resamples=n, seed=seed, curve="monotonic")
    # the counts add up to the draws left out, and each draw is named as the brute force names it
    assert pareto.ok and 0 < pareto.n_dropped == n - pareto.n_valid
    assert dict(pareto.dropped) == _pareto_counts(saturating, resample_weights(len(IDS), n, seed))
    assert {cause for cause, _ in pareto.dropped} == {
        "anchor vtm kept 3 < 4 points after the pareto rule",
        "sat kept 3 < 4 points after the pareto rule",
        "anchor vtm kept 3 and sat kept 3 < 4 points after the pareto rule",
    }
    assert [k for _, k in pareto.dropped] == sorted((k for _, k in pareto.dropped), reverse=True)
    note = pareto.dropped_note()
    assert note.startswith(f"{pareto.n_dropped} of {n} resamples have no BD-rate (anchor vtm kept 3 < 4 points")
    assert "conditioned on a resample having a BD-rate" in note and "overlap" not in note
    # under the monotonic fit no curve loses a point: that cause is gone, every draw has a BD-rate
    assert not any("pareto rule" in cause for cause, _ in monotonic.dropped)
    assert monotonic.n_dropped == 0 and monotonic.n_valid == n and monotonic.dropped_note() == ""


def test_a_pair_with_no_bd_rate_on_any_draw_says_why_in_its_reason(saturating):
    """A reference curve above any mAP the images can give (over 100 %): no draw overlaps it, and
    the reason counts that cause, the only one where the old wording "overlap" was right."""
    from vcmbench.bootstrap import FixedCurve

    above = FixedCurve("ref", np.array([0.1, 0.2, 0.4, 0.8]), np.array([101.0, 102.0, 103.0, 104.0]))
    r = bootstrap_pair(saturating.curve("sat"), above, resample_weights(len(IDS), 20, 0), curve="monotonic")
    assert not r.ok and r.n_valid == 0 and r.n_dropped == 20
    assert r.reason == "no resample had a BD-rate (the two curves' mAP ranges do not overlap: 20)"


def test_the_report_row_and_the_gate_say_how_many_draws_were_dropped_and_why(saturating):
    import pandas as pd

    from vcmbench.analysis import bd_rows
    from vcmbench.bootstrap import BootstrapSettings
    from vcmbench.regress import Significance, _bd
    from vcmbench.render.report_tables import BD_LEGEND, bd_display

    rows = [
        {"codec": c, "rate": p.rate, "bpp": float(p.values(None)[0][0]), "map": float(p.values(None)[1][0])}
        for c in ("vtm", "sat")
        for p in saturating.curve(c)
    ]
    points = pd.DataFrame(rows)
    (iv,) = bootstrap_bd(saturating, "vtm", ["sat"], n_resamples=300, seed=1)
    (shown,) = bd_display(bd_rows(points, "vtm"), {"sat": iv}).to_dict("records")
    assert iv.dropped_note() in shown["note"] and "without overlap" not in shown["note"]
    assert "conditioned on a resample having a BD-rate" in BD_LEGEND
    # the gate: the run against itself as a paired reference; the bounds come with the dropped draws
    sat = points[points.codec == "sat"]
    sig = Significance(0.05, BootstrapSettings(300, 1), saturating, saturating)
    check = _bd("coco_mini", "m", "sat", sat, sat, 1.0, "pchip", "map", significance=sig)
    assert "resamples have no BD-rate (the reference kept 3" in check.detail
    assert "conditioned on a resample having a BD-rate" in check.detail


@pytest.mark.timeout(120)
def test_the_process_pool_gives_the_same_intervals_and_points_as_this_process(monkeypatch):
    """bootstrap_bd and item_points spread their calls over processes when there are many
    (process_map); forced onto the pool here, every figure equals the one-process run's."""
    import vcmbench.bootstrap as bootstrap

    rng = np.random.default_rng(1)
    factor = {im["id"]: float(rng.uniform(0.6, 1.2)) for im in GT["images"]}
    recs = [records("anchor", bits), records("mixed", lambda p, im: bits(p, im) * factor[im["id"]], seed=100)]
    items = run_items(*recs)
    serial = bootstrap_bd(items, "anchor", ["mixed", "anchor"], n_resamples=300, seed=3)
    monkeypatch.setattr(bootstrap, "PARALLEL_RESAMPLES", 1)  # every call set goes to the pool
    monkeypatch.setattr(bootstrap, "PARALLEL_POINTS", 1)
    pooled_items = run_items(*recs)
    assert pooled_items.points.keys() == items.points.keys()
    pooled = bootstrap_bd(pooled_items, "anchor", ["mixed", "anchor"], n_resamples=300, seed=3)
    assert [(r.codec, r.estimate, r.lo, r.hi, r.median, r.n_valid) for r in pooled] == [
        (r.codec, r.estimate, r.lo, r.hi, r.median, r.n_valid) for r in serial
    ]


def test_resamples_scored_in_blocks_equal_one_block():
    """ItemMatches.score takes many resamples in blocks of SCORE_ROWS: the same numbers as one."""
    from vcmbench.metrics import item_matches

    items = run_items(records("anchor", bits))
    w = resample_weights(len(IDS), 3 * item_matches.SCORE_ROWS + 5, seed=2)
    point = items.curve("anchor")[0]
    blocks = point.matches.score(w)
    whole = item_matches.evaluator_named("coco").score(point.matches.classes, w, False)
    for key in ("map", "ap50"):
        np.testing.assert_array_equal(blocks[key], whole[key])
