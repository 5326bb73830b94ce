"""The SFU-HW-Objects-v1 sequence table and selection, shared by both layouts `sfu_hw_objects` reads.

The YUV layout (`sfu_hw`: raw YUV + per-frame YOLO txt) and the MPEG FCM test-data layout
(`sfu_hw_fcm`: PNG frames + per-sequence COCO json, as CompressAI-Vision prescribes) must report
the same sequence under the same name and class, and must select the same sequences for the same
`sequences` / `classes` settings, or results from the two layouts would not line up. So the table,
the COCO class mapping and the selection rules live here, once.

Classes: the table gives each sequence its letter (A..E). The FCM common test conditions report
Traffic (A) and the class B sequences together as CLASS-AB; `classes` accepts the CTTC names
(`CLASS-AB`, `CLASS-C`, `AB`, ...) as well as letters, and `class_labels: cttc` reports each
sequence under its CTTC class name (CLASS-AB, CLASS-C, CLASS-D, ...), so that the class rows of a
run, and of `vcmbench export --format cttc`, are the template's. The default (`letters`) keeps the
letter classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcmbench.datasets.cache import plain
from vcmbench.datasets.coco_categories import COCO_CATEGORIES
from vcmbench.errors import DatasetError
from vcmbench.paths import is_none

#: Frame image id = sequence_id * FRAME_ID_STRIDE + the frame's number within its sequence.
FRAME_ID_STRIDE = 1_000_000

#: SFU class index (0..79; SFU-HW-Objects' YOLO txt files and the MPEG FCM jsons' `category_id`) -> COCO id.
SFU_TO_COCO: tuple[int, ...] = tuple(cid for cid, _ in COCO_CATEGORIES)

#: `class_labels` values: the table's letters, or the class names of the FCM CTTC report.
CLASS_LABELS = ("letters", "cttc")


@dataclass(frozen=True)
class SfuSequence:
    """A sequence and its frame window: frames `first .. first + count - 1` of the YUV (from 0).

    `width`/`height`/`fps`/`count` may be None for user-added sequences: taken from the YUV
    file's name (`<Name>_<W>x<H>_<fps>`) and size (every frame from `first`). `aliases` are
    other names its YUV file or annotation folder goes by; `file` names the YUV under yuv_dir.
    `ctc`: selected by default (when neither `sequences` nor `classes` is given). The FCM layout
    uses name, class, aliases and size only: its frames are the ones its files hold.
    """

    name: str
    seq_class: str
    width: int | None
    height: int | None
    fps: float | None
    first: int
    count: int | None
    aliases: tuple[str, ...] = ()
    file: str | None = None
    ctc: bool = True


#: The SFU-HW-Objects-v1 sequences with their frame windows, as listed in the FCM CTC; check
#: against your copy (`frame_window` / `extra_sequences` override any entry). The windows are the
#: last `count` frames of each HEVC CTC sequence (Traffic: frames 117..149 of 150); each `count`
#: equals the frame count of MPEG's per-sequence annotation json (CompressAI-Vision,
#: data/mpeg-fcm/SFUHW/sfu-annotations-from-m59143). Class E is in SFU-HW-Objects-v1 but not in
#: the FCM CTC: those entries are used only when named in `sequences` or selected with `classes`.
#: PeopleOnStreet (class A) is not in the table.
SFU_SEQUENCES: tuple[SfuSequence, ...] = (
    SfuSequence("Traffic", "A", 2560, 1600, 30, 117, 33),
    SfuSequence("Kimono", "B", 1920, 1080, 24, 207, 33, ("Kimono1",)),
    SfuSequence("ParkScene", "B", 1920, 1080, 24, 207, 33),
    SfuSequence("Cactus", "B", 1920, 1080, 50, 403, 97),
    SfuSequence("BasketballDrive", "B", 1920, 1080, 50, 403, 97),
    SfuSequence("BQTerrace", "B", 1920, 1080, 60, 471, 129),
    SfuSequence("BasketballDrill", "C", 832, 480, 50, 403, 97),
    SfuSequence("BQMall", "C", 832, 480, 60, 471, 129),
    SfuSequence("PartyScene", "C", 832, 480, 50, 403, 97),
    SfuSequence("RaceHorsesC", "C", 832, 480, 30, 235, 65, ("RaceHorses",)),
    SfuSequence("BasketballPass", "D", 416, 240, 50, 403, 97),
    SfuSequence("BQSquare", "D", 416, 240, 60, 471, 129),
    SfuSequence("BlowingBubbles", "D", 416, 240, 50, 403, 97),
    SfuSequence("RaceHorses", "D", 416, 240, 30, 235, 65, ("RaceHorsesD",)),
    SfuSequence("FourPeople", "E", 1280, 720, 60, 471, 129, ctc=False),
    SfuSequence("Johnny", "E", 1280, 720, 60, 471, 129, ctc=False),
    SfuSequence("KristenAndSara", "E", 1280, 720, 60, 471, 129, ctc=False),
)

_EXTRA_KEYS = {"class", "width", "height", "fps", "first", "count", "file", "aliases"}
#: CTTC class names: A and B are reported together.
_CTTC_NAMES = {"A": "CLASS-AB", "B": "CLASS-AB"}


def unset(value: Any) -> bool:
    """A config value that means "not given" (None, null, none, empty)."""
    return value is None or is_none(value)


def whole(value: Any, what: str, minimum: int) -> int:
    """`value` as an int >= minimum, or a DatasetError naming the setting `what`."""
    try:
        out = int(value)
        ok = float(value) == out and out >= minimum
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DatasetError(f"{what}={value!r}: must be a whole number >= {minimum}")
    return out


def sequence_table(extra_sequences: dict | None = None, frame_window: dict | None = None) -> dict[str, SfuSequence]:
    """`SFU_SEQUENCES` with `extra_sequences` merged in and `frame_window` applied, by name.

    `extra_sequences`: name -> {class, first, count, fps, width, height, file, aliases}; a new
    name needs `class` (the rest defaults from the YUV file name and size, first 0, every frame);
    a table name overrides just the keys given. `frame_window`: name -> [first, count].
    """
    table = {s.name: s for s in SFU_SEQUENCES}
    for name, spec in (plain(extra_sequences) or {}).items():
        name = str(name)
        where = f"dataset.extra_sequences.{name}"
        spec = dict(spec or {})
        unknown = sorted(set(spec) - _EXTRA_KEYS)
        if unknown:
            raise DatasetError(f"{where}: unknown key(s) {unknown}; use {sorted(_EXTRA_KEYS)}")
        base = table.get(name)
        if base is None:
            if unset(spec.get("class")):
                raise DatasetError(f"{where}: a sequence not in the built-in table needs a 'class' (e.g. 'B')")
            base = SfuSequence(name, str(spec["class"]), None, None, None, 0, None)
        changes: dict[str, Any] = {}
        if not unset(spec.get("class")):
            changes["seq_class"] = str(spec["class"])
        for key in ("width", "height", "count"):
            if not unset(spec.get(key)):
                changes[key] = whole(spec[key], f"{where}.{key}", 1)
        if not unset(spec.get("first")):
            changes["first"] = whole(spec["first"], f"{where}.first", 0)
        if not unset(spec.get("fps")):
            try:
                changes["fps"] = float(spec["fps"])
            except (TypeError, ValueError):
                changes["fps"] = -1.0
            if not changes["fps"] > 0:
                raise DatasetError(f"{where}.fps={spec['fps']!r}: give a positive frame rate")
        if not unset(spec.get("file")):
            changes["file"] = str(spec["file"])
        if not unset(spec.get("aliases")):
            aliases = spec["aliases"]
            changes["aliases"] = (str(aliases),) if isinstance(aliases, str) else tuple(str(a) for a in aliases)
        table[name] = dataclasses.replace(base, **changes)
    for name, window in (plain(frame_window) or {}).items():
        name = str(name)
        where = f"dataset.frame_window.{name}"
        if name not in table:
            raise DatasetError(
                f"{where}: no such sequence; known: {sorted(table)} (add one with dataset.extra_sequences)"
            )
        if not isinstance(window, list | tuple) or len(window) != 2:
            raise DatasetError(f"{where}={window!r}: give [first, count]")
        table[name] = dataclasses.replace(
            table[name],
            first=whole(window[0], f"{where}[0] (first)", 0),
            count=whole(window[1], f"{where}[1] (count)", 1),
        )
    return table


def lookup(table: dict[str, SfuSequence], name: str) -> SfuSequence:
    """The table entry named `name` or, failing that, the one entry with it as an alias."""
    if name in table:
        return table[name]
    by_alias = [s for s in table.values() if name in s.aliases]
    if len(by_alias) == 1:
        return by_alias[0]
    raise DatasetError(
        f"dataset.sequences: {name!r} is not a known SFU-HW sequence ({', '.join(table)}); "
        "add it with dataset.extra_sequences"
    )


def class_letters(token: str, known: set[str]) -> set[str]:
    """The table classes one `classes` entry means: a class itself, or a CTTC name such as
    `CLASS-AB`, `ClassC` or `AB` (each letter a class). Anything else is returned as given, so the
    caller's "no sequence of these classes" error names it."""
    if token in known:
        return {token}
    rest = token
    for prefix in ("CLASS-", "CLASS_", "CLASS"):
        if rest.upper().startswith(prefix):
            rest = rest[len(prefix) :]
            break
    by_fold = {k.casefold(): k for k in known}
    if rest.casefold() in by_fold:
        return {by_fold[rest.casefold()]}
    if len(rest) > 1 and all(c.casefold() in by_fold for c in rest):
        return {by_fold[c.casefold()] for c in rest}
    return {token}


def class_label(seq_class: str, labels: str) -> str:
    """The class a sequence is reported under: its letter, or its CTTC class name."""
    return seq_class if labels == "letters" else _CTTC_NAMES.get(seq_class, f"CLASS-{seq_class}")


def select_entries(
    table: dict[str, SfuSequence],
    sequences: Any,
    classes: Any,
    extra_names: set[str],
) -> tuple[list[SfuSequence], bool]:
    """The entries `sequences` / `classes` select, in the order given (table order otherwise), and
    whether they were named explicitly (then each one must be present).

    Default: every CTC entry and every `extra_sequences` entry; `classes` keeps those of the
    classes given and, given alone, also selects the non-CTC (class E) entries it names.
    """
    sequences, classes = plain(sequences), plain(classes)
    known = {e.seq_class for e in table.values()}
    keep = None
    if not unset(classes):
        tokens = classes if isinstance(classes, list | tuple) else [classes]
        keep = set().union(*(class_letters(str(c), known) for c in tokens))
    explicit = not unset(sequences)
    if explicit:
        names = [sequences] if isinstance(sequences, str) else [str(s) for s in sequences]
        entries = [lookup(table, n) for n in names]
        if len({e.name for e in entries}) != len(entries):
            raise DatasetError(f"dataset.sequences={names}: a sequence is listed twice")
    elif keep is None:
        entries = [e for e in table.values() if e.ctc or e.name in extra_names]
    else:
        entries = list(table.values())
    if keep is not None:
        entries = [e for e in entries if e.seq_class in keep]
        if not entries:
            raise DatasetError(
                f"dataset.classes={sorted(keep)}: no selected sequence is of these classes "
                f"(classes in the table: {sorted(known)}; CTTC names such as CLASS-AB also work)"
            )
    return entries, explicit


def labels_setting(class_labels: Any) -> str:
    """The `class_labels` setting checked: 'letters' (also when unset) or 'cttc'."""
    labels = "letters" if unset(class_labels) else str(class_labels)
    if labels not in CLASS_LABELS:
        raise DatasetError(f"dataset.class_labels={class_labels!r}: use one of {list(CLASS_LABELS)}")
    return labels


def labelled(entries: list[SfuSequence], labels: str) -> list[SfuSequence]:
    """`entries` with their classes renamed as `labels` ('letters' or 'cttc') asks."""
    return [dataclasses.replace(e, seq_class=class_label(e.seq_class, labels)) for e in entries]


def stamp(path: Path) -> list:
    """A file's path, size and mtime: what a cached conversion's fingerprint is made of."""
    st = path.stat()
    return [str(path.absolute()), int(st.st_size), int(st.st_mtime_ns)]
