"""Multi-object tracking, registered: MOTA, IDF1, HOTA and identity switches (TrackEval, in
`metrics.tracking`) of the tracker run on each sequence's decoded detections, for sets whose
annotations carry track ids.

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
    from vcmbench.vision.tracker import track_sequence  # the registry's lookups stay free of torch

    dataset = items.sequences
    assert dataset is not None  # tracks_identities
    by_id = {s.sequence_id: s for s in dataset.sequences}
    pairs = {}
    for r in records:
        seq = by_id[r.item_id]
        key = ("tracks", seq.sequence_id)
        if key not in memo:
            truth = dataset.ground_truth_tracks[seq.sequence_id]
            memo[key] = (
                [truth[f] for f in seq.frame_ids],
                track_sequence([f.detections for f in r.frame_results()], **(items.tracker or {})),
            )
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
