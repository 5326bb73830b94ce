"""What MPEG's CTTC csv knows of each test set: its file, its class groups, its sequence names.

MPEG's platform (CompressAI-Vision, `scripts/metrics/gen_mpeg_cttc_csv.py`, checked at its commit
31165da of April 2026) writes one `final_<SET>.csv` per result folder (a codec on a test set). The
facts it encodes, restated here as data:

* SFU (FCM mode, its default, Cactus included): classes CLASS-AB (Traffic with the five class B
  sequences), CLASS-C, CLASS-D; sequences named `<Name>_<W>x<H>_<fps>` (`Traffic_2560x1600_30`,
  `RaceHorses_832x480_30` for vcmbench's RaceHorsesC); sequence rows in the order its class lists
  name them (CLASS-AB's first), not by name.
* TVD: one class TVD (TVD-01..03); HiEve: HIEVE-1080P (hieve-13, hieve-16) and HIEVE-720P
  (hieve-17, hieve-18, hieve-2); sequence rows sorted by name (as text: hieve-2 comes last).
* PandaSet: PANDAM1..3 of three-digit scene numbers; sequence rows in the order listed.
* OIV6 (images): rows `mpeg-oiv6-detection` and `mpeg-oiv6-segmentation`, sorted by name; no
  class rows.

vcmbench names its sequences after its dataset modules: SFU's by `vcmbench.datasets.sfu_table`
(name or alias plus the table's size and frame rate give the platform's name), TVD's and HiEve's
by `vcmbench.datasets.fcm_tracking` (already the platform's `cttc_name`). A set whose sequences
are not all in one of these tables (the synthetic sets, a MOT folder, an SFU run with added
sequences) is written under its vcmbench dataset name, with its sequences named as the run names
them and its classes as the run groups them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vcmbench.datasets.fcm_tracking import LAYOUTS
from vcmbench.datasets.sfu_table import SFU_SEQUENCES

__all__ = ["PlatformSet", "PLATFORM_SETS", "IMAGE_SETS", "platform_set", "qp_value"]


@dataclass(frozen=True)
class PlatformSet:
    """One of the platform's video test sets: the tag of its file (`final_<tag>.csv`), its class
    groups in its order, and whether its sequence rows follow that order (else: sorted by name)."""

    tag: str
    classes: tuple[tuple[str, tuple[str, ...]], ...]
    listed_order: bool

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for _, members in self.classes for n in members)


_SFU = PlatformSet(
    "SFU",
    (
        (
            "CLASS-AB",
            (
                "Traffic_2560x1600_30",
                "Kimono_1920x1080_24",
                "ParkScene_1920x1080_24",
                "Cactus_1920x1080_50",
                "BasketballDrive_1920x1080_50",
                "BQTerrace_1920x1080_60",
            ),
        ),
        (
            "CLASS-C",
            ("BasketballDrill_832x480_50", "BQMall_832x480_60", "PartyScene_832x480_50", "RaceHorses_832x480_30"),
        ),
        (
            "CLASS-D",
            ("BasketballPass_416x240_50", "BQSquare_416x240_60", "BlowingBubbles_416x240_50", "RaceHorses_416x240_30"),
        ),
    ),
    listed_order=True,
)
_TVD = PlatformSet("TVD", (("TVD", ("TVD-01", "TVD-02", "TVD-03")),), listed_order=False)
_HIEVE = PlatformSet(
    "HIEVE",
    (("HIEVE-1080P", ("hieve-13", "hieve-16")), ("HIEVE-720P", ("hieve-17", "hieve-18", "hieve-2"))),
    listed_order=False,
)
_PANDASET = PlatformSet(
    "PANDASET",
    (
        ("PANDAM1", ("057", "058", "069", "070", "072", "073", "077")),
        (
            "PANDAM2",
            ("003", "011", "016", "017", "021", "023", "027", "029", "030")
            + ("033", "035", "037", "039", "043", "053", "056", "097"),
        ),
        ("PANDAM3", ("088", "089", "090", "095", "109", "112", "113", "115", "117", "119", "122", "124")),
    ),
    listed_order=True,
)
PLATFORM_SETS: tuple[PlatformSet, ...] = (_SFU, _TVD, _HIEVE, _PANDASET)

#: vcmbench image dataset -> (the platform's file tag, its row name). The platform reads its OIV6
#: results segmentation first (the index column numbers rows in that reading order).
IMAGE_SETS: dict[str, tuple[str, str]] = {
    "openimages_mpeg_segmentation": ("OIV6", "mpeg-oiv6-segmentation"),
    "openimages_mpeg": ("OIV6", "mpeg-oiv6-detection"),
}


def _sfu_names() -> dict[str, str]:
    """vcmbench's SFU names (table names and aliases) -> the platform's `<Name>_<W>x<H>_<fps>`."""
    wanted = set(_SFU.names)
    out: dict[str, str] = {}
    for entry in SFU_SEQUENCES:
        if entry.width is None or entry.height is None or entry.fps is None:
            continue
        size = f"{entry.width}x{entry.height}_{entry.fps:g}"
        for candidate in (entry.name, *entry.aliases):
            if f"{candidate}_{size}" in wanted:
                out[entry.name] = f"{candidate}_{size}"
    return out


def _tracking_names() -> dict[str, str]:
    return {s.cttc_name: s.cttc_name for layout in LAYOUTS.values() for s in layout.sequences}


def platform_set(sequences: list[str]) -> tuple[PlatformSet, dict[str, str]] | None:
    """The platform set all of `sequences` belong to and each one's platform name, or None."""
    known = {**_sfu_names(), **_tracking_names()}
    for pset in PLATFORM_SETS:
        names = set(pset.names)
        mapping = {}
        for s in sequences:
            name = s if s in names else known.get(s)
            if name not in names:
                break
            mapping[s] = name
        else:
            if sequences:
                return pset, mapping
    return None


_KNOB = re.compile(r"^(?:[A-Za-z_][\w.-]*=)?(?P<value>[^=+]+)$")


def qp_value(label: str) -> int | float | None:
    """The number in a rate label (`qp=37` -> 37, `lambda=0.025` -> 0.025, `37` -> 37); None for a
    label that is not one knob's number (joint codecs' `quality=2+qp=42`)."""
    m = _KNOB.match(str(label).strip())
    if not m:
        return None
    text = m["value"].strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value else None  # NaN is no number to sort by
