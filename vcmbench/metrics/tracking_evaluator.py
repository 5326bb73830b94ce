"""Multi-object tracking, registered: MOTA, IDF1, HOTA and identity switches (TrackEval, in
`metrics.tracking`) of the tracker run on each sequence's decoded detections, for sets whose
annotations carry track ids. Which tracker: `tracker.kind` (`vision.trackers`: JDE's own on records
with appearance embeddings, the ByteTrack-style one on boxes alone), decided over the run's records
when the points are built (`ItemSet.tracker["kind"]`); left at auto, over the records scored here.

MOTA is the rate-distortion metric of a tracking set (its headline outranks the box AP, which the
sequence tables keep in `ap`), as the MPEG tracking conditions report it. Over several sequences
(a class) the figures are TrackEval's combination (counts summed, then the ratios), not a mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vcmbench.metrics.evaluators import Evaluator, ItemRecord, ItemSet, register
from vcmbench.metrics.tracking import COMBINED, evaluate_sequences

COLUMNS = ("mota", "idf1", "hota", "id_switches")


def tracks_identities(items: ItemSet, records: Sequence[ItemRecord]) -> bool:
    """The items are sequences of a set with track ids."""
    return items.sequences is not None and items.sequences.tracking


def tracking_scores(
    items: ItemSet, records: Sequence[ItemRecord], results: list[dict], memo: dict
) -> Mapping[str, float]:
    """The combined tracking figures of the records' sequences. Each sequence is tracked once per
    (codec, rate) group (`memo`), though it is scored alone and again in its class."""
    from vcmbench.vision.trackers import TrackerChoice  # the registry's lookups stay free of torch

    dataset = items.sequences
    assert dataset is not None  # tracks_identities
    by_id = {s.sequence_id: s for s in dataset.sequences}
    choice = TrackerChoice.from_settings(items.tracker)
    # decided over the whole run (points.py): a group whose every item failed has no embeddings, yet is
    # tracked like the others (its empty frames give no tracks)
    kind = choice.kind if choice.kind != "auto" else choice.resolve(any(r.has_embeddings for r in records))
    pairs = {}
    for r in records:
        seq = by_id[r.item_id]
        key = ("tracks", kind, seq.sequence_id)
        if key not in memo:
            truth = dataset.ground_truth_tracks[seq.sequence_id]
            frames = [(f.detections, e) for f, e in zip(r.frame_results(), r.embedding_arrays())]
            memo[key] = ([truth[f] for f in seq.frame_ids], choice.track(frames, seq.fps, kind))
        pairs[seq.name] = memo[key]
    combined = evaluate_sequences(pairs)[COMBINED]
    return {k: combined[k] for k in COLUMNS}


TRACKING = register(
    Evaluator(
        "mota",
        "MOTA",
        columns=COLUMNS,
        headline="mota",
        precedence=1,
        applies=tracks_identities,
        evaluate_items=tracking_scores,
    )
)
