"""The prediction structure of a coded video (all intra, low delay, random access; intra period).

Kept apart from the back-ends because the sequence layer (`vcmbench.codecs.sequence`) names GOPs
without running any encoder; each back-end translates a Gop into its own options.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gop:
    """The prediction structure of one video: how its frames refer to each other.

    structure: `all_intra` (every frame intra), `low_delay` (frames in display order, each
    predicted from earlier ones: the FCM CTC's VTM low-delay), `random_access` (hierarchical
    B-frames with reordering). intra_period: frames between intra refreshes; 0 = one intra
    frame at the start only (what `intra=False` meant before sequences: the per-image inter
    modes keep their bytes).
    """

    structure: str = "all_intra"
    intra_period: int = 1

    STRUCTURES = ("all_intra", "low_delay", "random_access")

    @property
    def intra(self) -> bool:
        return self.structure == "all_intra"


ALL_INTRA = Gop("all_intra", 1)
ONE_INTRA = Gop("random_access", 0)


def as_gop(intra: bool | Gop) -> Gop:
    """`intra=True/False` of the per-image calls, or a Gop."""
    if isinstance(intra, Gop):
        return intra
    return ALL_INTRA if intra else ONE_INTRA
