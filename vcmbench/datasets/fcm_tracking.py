"""TVD and HiEve as the MPEG FCM common test conditions lay them out and score them: the
`tvd_tracking` and `hieve_tracking` datasets, read by the MOT reader (vcmbench.datasets.mot).

MPEG contributors hold the test data in the layout of the FCM platform, CompressAI-Vision
(its data/mpeg-fcm/README.md)::

    fcm_testdata/tvd_tracking/MD5.txt
    fcm_testdata/tvd_tracking/TVD-01/{seqinfo.ini, img1/000001.png ..., gt/gt.txt}   (TVD-02, TVD-03)
    fcm_testdata/HiEve_pngs/13/{seqinfo.ini, img1/000000.png ..., gt/gt.txt}         (16, 17, 18, 2)

`dataset.root` is the fcm_testdata folder or the layout's own folder (tvd_tracking, HiEve_pngs):
users point at either, and the platform's scripts take the first, its metrics script the second.

What the platform reads per sequence, and where each fact was found (InterDigitalInc/
CompressAI-Vision, HEAD 31165da); the files do not say which class a sequence is reported under,
nor its intra period, so `LAYOUTS` records them:

- Folders: `<layout folder>/<seq>`, frames in `img1`, ground truth `gt/gt.txt` for both sets
  (scripts/evaluation/{tvd,hieve}/eval_on_*_{vtm,hm,vcmrs}.sh: dataset.config.root,
  imgs_folder=img1, annotation_file=gt/gt.txt; scripts/metrics/utils.py looks for the same).
- Frame rate: seqinfo.ini `frameRate`, which the codecs read (compressai_vision/codecs/
  std_codecs.py): 50 for TVD, 30 for HiEve (data/mpeg-fcm/fcm_testdata/*/*/seqinfo.ini, and the
  frame_rate of scripts/evaluation/tvd/tvd.json, hieve/hieve.json). vcmbench reads the ini too.
- Intra period: 64 for TVD, 32 for HiEve (intra_period in tvd.json / hieve.json, passed as
  codec.encoder_config.intra_period). vcmbench's `intra_period: auto` gives the same from the
  frame rate (vcmbench.codecs.sequence.ctc_gop: 32 at 24/30 fps, else 64); the table keeps it.
- Frames: `imExt=.png`, sizes and lengths as the seqinfo.ini files say; TVD's are numbered from
  000001.png, HiEve's from 000000.png (commit fbfc102, "starting frame number for tvd is 1, 0 for
  sfu and hieve"; compressai_vision/codecs/encdec_utils/png_yuv.py). The platform pairs a frame
  with the gt rows of the same number (compressai_vision/datasets/image.py: MPEGTVDTRACKING's
  image id is the file's number); the MOT reader does the same.
- Rows kept (compressai_vision/evaluators/evaluators.py): TVD's MOT-TVD-EVAL loads gt.txt with
  motmetrics (mot15-2D: x, y - 1) and scores with motmetrics.utils.CLEAR_MOT_M, whose ground
  truth is the rows with flag (7th column) >= 0.99 and class (8th) 1; predictions overlapping a
  row of class 2/7/8/12 or visibility < 0 are removed as ignore regions. vcmbench keeps the same
  rows (`TVD_RULE`) but drops the distractors rather than ignoring predictions on them (the MOT
  reader's caveat). HiEve's MOT-HIEVE-EVAL loads with min_confidence=1 and scores with
  motmetrics.utils.compare_to_groundtruth: ground truth is the rows with flag >= 1, whatever their
  class; visibility is not read (`HIEVE_RULE`).
- Classes: scripts/metrics/gen_mpeg_cttc_csv.py reports TVD-01..03 under class TVD, and HiEve's
  as hieve-13, hieve-16 under HIEVE-1080P and hieve-17, hieve-18, hieve-2 under HIEVE-720P (its
  rows' names and order; the sizes in the seqinfo.ini files agree). vcmbench reports the same
  names and classes, so `export --format cttc` rows match the template's.
"""

from __future__ import annotations

import configparser
import logging
from dataclasses import dataclass
from pathlib import Path

from vcmbench.datasets.cache import plain
from vcmbench.datasets.mot import RowRule, assemble
from vcmbench.datasets.sequences import SequenceDataset
from vcmbench.datasets.shards import shardable
from vcmbench.errors import DatasetError
from vcmbench.paths import is_none

log = logging.getLogger(__name__)

#: MOT-TVD-EVAL's ground truth: flag >= 0.99 and class 1 (motmetrics CLEAR_MOT_M).
TVD_RULE = RowRule(min_flag=0.99, classes=(1,))
#: MOT-HIEVE-EVAL's ground truth: flag >= 1, any class (motmetrics loadtxt min_confidence=1).
HIEVE_RULE = RowRule(min_flag=1.0)


@dataclass(frozen=True)
class FcmSequence:
    """One sequence of the FCM CTC as the platform runs it."""

    folder: str  # the sequence folder under the layout folder
    cttc_name: str  # its row in the CTTC csv (the name vcmbench reports it under)
    cttc_class: str  # the class row it counts towards
    frame_rate: float  # seqinfo.ini frameRate
    intra_period: int  # the CTC's, in frames
    first_frame: int  # the number of its first png (the MOT reader takes it from the files)
    width: int
    height: int
    frames: int  # seqinfo.ini seqLength: the frames the CTC codes


@dataclass(frozen=True)
class FcmLayout:
    """One test set in fcm_testdata: its folder, the platform's evaluator and rows, its sequences."""

    folder: str
    evaluator: str
    rule: RowRule
    sequences: tuple[FcmSequence, ...]  # in the CTTC csv's order

    def find(self, folder: str) -> FcmSequence | None:
        return next((s for s in self.sequences if s.folder == folder), None)

    @property
    def how_to_get(self) -> str:
        names = ", ".join(s.folder for s in self.sequences)
        return (
            f"put the MPEG FCM test data's {self.folder} folder (sequences {names}, each with seqinfo.ini, "
            f"img1/*.png and gt/gt.txt) in dataset.root, or give that folder itself as dataset.root"
        )


def _tvd(name: str, frames: int) -> FcmSequence:
    return FcmSequence(name, name, "TVD", 50.0, 64, 1, 1920, 1080, frames)


def _hieve(name: str, cls: str, width: int, height: int, frames: int) -> FcmSequence:
    return FcmSequence(name, f"hieve-{name}", cls, 30.0, 32, 0, width, height, frames)


LAYOUTS: dict[str, FcmLayout] = {
    "tvd": FcmLayout(
        "tvd_tracking",
        "MOT-TVD-EVAL",
        TVD_RULE,
        (_tvd("TVD-01", 3000), _tvd("TVD-02", 636), _tvd("TVD-03", 2334)),
    ),
    "hieve": FcmLayout(
        "HiEve_pngs",
        "MOT-HIEVE-EVAL",
        HIEVE_RULE,
        (
            _hieve("13", "HIEVE-1080P", 1920, 1080, 1416),
            _hieve("16", "HIEVE-1080P", 1920, 1080, 700),
            _hieve("17", "HIEVE-720P", 1280, 720, 966),
            _hieve("18", "HIEVE-720P", 1280, 720, 1614),
            _hieve("2", "HIEVE-720P", 1280, 720, 4819),
        ),
    ),
}


def get_layout(layout: str) -> FcmLayout:
    spec = LAYOUTS.get(str(layout).lower())
    if spec is None:
        raise DatasetError(f"dataset.layout={layout!r}: not an FCM tracking layout; choose one of {sorted(LAYOUTS)}")
    return spec


def layout_folder(spec: FcmLayout, root: str | Path) -> Path:
    """The folder holding the sequences: root/<layout folder> if there is one, else root itself if it
    holds one of the layout's sequences (root given as the layout folder)."""
    rootp = Path(str(root)).expanduser()
    if not rootp.is_dir():
        raise DatasetError(f"dataset.root={rootp.absolute()}: folder not found; {spec.how_to_get}")
    if (rootp / spec.folder).is_dir():
        return rootp / spec.folder
    if any((rootp / s.folder / "seqinfo.ini").is_file() for s in spec.sequences):
        return rootp
    raise DatasetError(
        f"dataset.root={rootp.absolute()}: holds neither {spec.folder}/ nor a sequence folder "
        f"({', '.join(s.folder for s in spec.sequences)}) with a seqinfo.ini; give the fcm_testdata folder "
        f"or its {spec.folder} folder"
    )


def _names(spec: FcmLayout, folder: Path, sequences: object) -> list[str]:
    """The chosen sequence folders, checked against the table; default: every one present, CTTC order."""
    sequences = plain(sequences)
    if sequences is None or is_none(sequences):
        names = [s.folder for s in spec.sequences if (folder / s.folder / "seqinfo.ini").is_file()]
        absent = [s.folder for s in spec.sequences if s.folder not in names]
        if not names:
            raise DatasetError(f"{folder.absolute()}: none of the sequences {absent} is there; {spec.how_to_get}")
        if absent:
            log.warning("%s: sequences %s are absent; their classes are reported without them", folder, absent)
        return names
    items = sequences if isinstance(sequences, list | tuple) else [sequences]
    names = [str(s) for s in items]
    if len(set(names)) != len(names):
        raise DatasetError(f"dataset.sequences={names}: a sequence is listed twice")
    unknown = [n for n in names if spec.find(n) is None]
    if unknown:
        raise DatasetError(
            f"dataset.sequences={names}: {unknown} not in the FCM CTC's {spec.folder} "
            f"({[s.folder for s in spec.sequences]}); use dataset=mot_folder for other sequences"
        )
    return names


def _check_against_table(folder: Path, seq: FcmSequence) -> None:
    """Warn where a sequence's seqinfo.ini departs from the CTC's (the ini still rules, as on the platform)."""
    ini = folder / seq.folder / "seqinfo.ini"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(ini.read_text(encoding="utf-8-sig"))
        sec = parser["Sequence"]
        fps, length = float(sec.get("frameRate", "nan")), int(float(sec.get("seqLength", "nan")))
    except (OSError, configparser.Error, KeyError, ValueError):
        return  # the MOT reader names what is wrong with it
    if fps != seq.frame_rate:
        log.warning(
            "%s: frameRate=%g, the FCM CTC's is %g; the ini's is used, as the platform does", ini, fps, seq.frame_rate
        )
    if length != seq.frames:
        log.warning("%s: seqLength=%d, the FCM CTC codes %d frames of %s", ini, length, seq.frames, seq.folder)


@shardable
def build(
    name: str,
    layout: str,
    root: str,
    sequences: list[str] | None = None,
    max_frames: int | None = None,
    cache_dir: str | None = None,
    how_to_get: str | None = None,
) -> SequenceDataset:
    """Hydra target: `dataset=tvd_tracking dataset.root=/data/fcm_testdata` (or hieve_tracking).

    `layout`: tvd or hieve (`LAYOUTS`); `sequences`: folder names (default: every CTC sequence
    present, in the CTTC's order); `max_frames`: the first N frames of each. Rows, reported names
    and classes are the platform's (module doc). `how_to_get` is accepted for config symmetry.
    """
    del how_to_get
    spec = get_layout(layout)
    folder = layout_folder(spec, root)
    if max_frames is not None and not is_none(max_frames) and int(max_frames) < 1:
        raise DatasetError(f"dataset.max_frames={max_frames}: must be >= 1 or null")
    names = _names(spec, folder, sequences)
    table = {n: s for n in names if (s := spec.find(n)) is not None}  # every name is (checked)
    for n, seq in table.items():
        gt = folder / n / "gt" / "gt.txt"
        if (folder / n).is_dir() and not gt.is_file():
            raise DatasetError(
                f"ground truth not found: {gt.absolute()}; the FCM CTC scores {n} against {n}/gt/gt.txt, so "
                f"copy that sequence's gt folder from the MPEG FCM test data into {(folder / n).absolute()}"
            )
        if (folder / n).is_dir():
            _check_against_table(folder, seq)
    return assemble(
        name,
        folder,
        names,
        None,
        {n: s.cttc_class for n, s in table.items()},
        max_frames,
        cache_dir,
        rule=spec.rule,
        labels={n: s.cttc_name for n, s in table.items()},
        how_to_get=spec.how_to_get,
    )
