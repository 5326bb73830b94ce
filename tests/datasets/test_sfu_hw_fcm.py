"""`sfu_hw_objects` on the MPEG FCM test-data layout: real seqinfo.ini files and annotation-json heads
(tests/data/fcm_sfu, from CompressAI-Vision) with small PNG frames written here."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from vcmbench.datasets import sfu_hw, sfu_hw_fcm
from vcmbench.datasets.sfu_table import SFU_SEQUENCES, SFU_TO_COCO
from vcmbench.errors import DatasetError
from vcmbench.paths import CONF_DIR

FIXTURE = Path(__file__).parents[1] / "data" / "fcm_sfu"
BQSQUARE, RACEHORSES = "BQSquare_416x240_60_val", "RaceHorses_832x480_30_val"
#: Image counts of MPEG's full annotation jsons (CompressAI-Vision 31165da,
#: data/mpeg-fcm/SFUHW/sfu-annotations-from-m59143/<folder>.json), by table name.
MPEG_COUNTS = {
    "Traffic": 33,
    "Kimono": 33,
    "ParkScene": 33,
    "Cactus": 97,
    "BasketballDrive": 97,
    "BQTerrace": 129,
    "BasketballDrill": 97,
    "BQMall": 129,
    "PartyScene": 97,
    "RaceHorsesC": 65,
    "BasketballPass": 97,
    "BQSquare": 129,
    "BlowingBubbles": 97,
    "RaceHorses": 65,
}


def pixels(w: int, h: int, seq: int, frame: int) -> np.ndarray:
    """A frame whose colour says which sequence and frame it is."""
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 50 * seq, 40 + 30 * frame, 7
    return img


def fixture_json(folder: str) -> dict:
    return json.loads((FIXTURE / "SFU_HW_Obj" / folder / "annotations" / f"{folder}.json").read_text())


def set_ini(ini: Path, **values: object) -> None:
    text = ini.read_text()
    for key, value in values.items():
        text = re.sub(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
    ini.write_text(text)


def write_frames(folder: Path, seq: int) -> None:
    """One PNG a json image, at the json's size, named as the json says."""
    (folder / "images").mkdir(exist_ok=True)
    coco = json.loads((folder / "annotations" / f"{folder.name}.json").read_text())
    for im in coco["images"]:
        Image.fromarray(pixels(im["width"], im["height"], seq, int(im["id"]))).save(folder / "images" / im["file_name"])


def make_fcm(tmp_path: Path, real_seqinfo: bool = False) -> Path:
    """tests/data/fcm_sfu copied as an fcm_testdata root, seqLength set to the heads' 3 images, frames written."""
    root = tmp_path / "fcm_testdata"
    shutil.copytree(FIXTURE, root)
    for seq, name in enumerate((RACEHORSES, BQSQUARE), start=1):
        folder = root / "SFU_HW_Obj" / name
        if not real_seqinfo:
            set_ini(folder / "seqinfo.ini", seqLength=3)
        write_frames(folder, seq)
    return root


def write_sequence(data_dir: Path, name: str, w: int, h: int, fps: int, n: int, seq: int, anns: list[dict]) -> Path:
    """A generated sequence folder in MPEG's form (float image ids, 0-based category index)."""
    folder = data_dir / name
    (folder / "annotations").mkdir(parents=True)
    images = [{"file_name": f"{name}_{k:03d}.png", "width": w, "height": h, "id": float(k)} for k in range(n)]
    coco = {"images": images, "categories": [{"name": "Person", "id": 0}], "annotations": anns}
    (folder / "annotations" / f"{name}.json").write_text(json.dumps(coco, indent=4))
    ini = f"[Sequence]\nname={name.split('_')[0]}\nimDir=img1\nframeRate={fps}\nseqLength={n}\n"
    (folder / "seqinfo.ini").write_text(ini + f"imWidth={w}\nimHeight={h}\nimExt=.png\n")
    write_frames(folder, seq)
    return folder


def build(root: Path, tmp_path: Path, **kw):
    return sfu_hw.build(name="fcm_test", root=str(root), cache_dir=str(tmp_path / "cache"), **kw)


@pytest.mark.timeout(60)
def test_fcm_layout_loads_sequences_frames_and_pixels(tmp_path):
    ds = build(make_fcm(tmp_path), tmp_path)
    assert not ds.tracking and ds.metric == "coco" and len(ds) == 2
    rc, bq = ds.sequences  # table order: class C's RaceHorsesC before class D's BQSquare
    assert (rc.name, rc.seq_class, rc.fps, len(rc.frames)) == ("RaceHorsesC", "C", 30.0, 3)
    assert (bq.name, bq.seq_class, bq.fps, len(bq.frames)) == ("BQSquare", "D", 60.0, 3)
    assert rc.frame_ids == [1_000_000, 1_000_001, 1_000_002] and bq.frame_ids == [2_000_000, 2_000_001, 2_000_002]
    assert bq.frames[1].file_name == f"{BQSQUARE}/images/{BQSQUARE}_001.png"
    assert ds.image_dir == tmp_path / "fcm_testdata" / "SFU_HW_Obj"
    for seq_no, seq, (w, h) in ((1, rc, (832, 480)), (2, bq, (416, 240))):
        samples = list(ds.frames(seq))
        assert [(s.width, s.height) for s in samples] == [(w, h)] * 3
        for k, s in enumerate(samples):
            assert s.image.permute(1, 2, 0).numpy().tolist()[0][0] == pixels(1, 1, seq_no, k)[0, 0].tolist()


@pytest.mark.timeout(60)
def test_fcm_frame_counts_equal_the_annotation_files(tmp_path):
    ds = build(make_fcm(tmp_path), tmp_path)
    for seq, folder in zip(ds.sequences, (RACEHORSES, BQSQUARE), strict=True):
        assert len(seq.frames) == len(fixture_json(folder)["images"]) == 3
    # the real seqinfo.ini says the full sequence's 65 frames: it must agree with the json's count
    real = make_fcm(tmp_path / "real", real_seqinfo=True)
    ini = real / "SFU_HW_Obj" / RACEHORSES / "seqinfo.ini"
    with pytest.raises(DatasetError) as err:
        build(real, tmp_path)
    msg = str(err.value)
    assert str(ini) in msg and "seqLength=65" in msg and "has 3 images" in msg and "\n" not in msg


@pytest.mark.timeout(60)
def test_builtin_table_counts_equal_mpeg_annotation_counts():
    table = {s.name: s for s in SFU_SEQUENCES if s.ctc}
    assert {name: s.count for name, s in table.items()} == MPEG_COUNTS
    for folder, name in ((BQSQUARE, "BQSquare"), (RACEHORSES, "RaceHorsesC")):
        info = sfu_hw_fcm.read_seqinfo(FIXTURE / "SFU_HW_Obj" / folder / "seqinfo.ini")
        s = table[name]
        assert int(info["seqlength"]) == MPEG_COUNTS[name]
        assert (float(info["framerate"]), int(info["imwidth"]), int(info["imheight"])) == (s.fps, s.width, s.height)


@pytest.mark.timeout(60)
def test_fcm_ids_and_category_ids_as_in_the_files(tmp_path):
    ds = build(make_fcm(tmp_path), tmp_path)
    coco = json.loads(ds.annotation_file.read_text())
    assert {c["id"] for c in coco["categories"]} == set(SFU_TO_COCO)
    by_image: dict[int, list] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append((a["category_id"], a["bbox"], a["area"], a["iscrowd"]))
    for sid, folder in ((1, RACEHORSES), (2, BQSQUARE)):
        src = fixture_json(folder)
        images = [i for i in coco["images"] if i["sequence_id"] == sid]
        assert [(i["id"], i["frame_index"]) for i in images] == [
            (sid * 1_000_000 + int(i["id"]), int(i["id"])) for i in src["images"]
        ]
        expected: dict[int, list] = {}
        for a in src["annotations"]:
            row = (SFU_TO_COCO[a["category_id"]], a["bbox"], a["area"], a["iscrowd"])
            expected.setdefault(sid * 1_000_000 + int(a["image_id"]), []).append(row)
        assert {i: by_image.get(i, []) for i in expected} == expected
    # the files' 0-based index, by the class each annotation names: 0 person -> 1, 17 horse -> 19, 56 chair -> 62
    cats = {a["category_id"] for a in coco["annotations"]}
    assert {1, 19, 62} <= cats and not cats - set(SFU_TO_COCO)
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"]) == 18 + 12


@pytest.mark.timeout(60)
def test_fcm_classes_selection_and_cttc_labels(tmp_path):
    root = make_fcm(tmp_path)
    (c_only,) = build(root, tmp_path, classes=["C"]).sequences
    assert (c_only.name, c_only.seq_class) == ("RaceHorsesC", "C")
    assert [s.name for s in build(root, tmp_path, classes="CLASS-D").sequences] == ["BQSquare"]
    picked = build(root, tmp_path, sequences=[BQSQUARE, "RaceHorsesC"], max_frames=2).sequences  # a folder name too
    assert [(s.name, len(s.frames)) for s in picked] == [("BQSquare", 2), ("RaceHorsesC", 2)]
    with pytest.raises(DatasetError, match=r"sequence folder of 'RaceHorses' not found: .*/RaceHorses_416x240_30_val/"):
        build(root, tmp_path, sequences=["RaceHorses"])  # class D's: the 832x480 folder is class C's
    labelled = build(root, tmp_path, class_labels="cttc")
    assert [(s.name, s.seq_class) for s in labelled.sequences] == [("RaceHorsesC", "CLASS-C"), ("BQSquare", "CLASS-D")]
    # Traffic (class A) amended to a small size: CLASS-AB selects it and names its class
    person = {"bbox": [1.0, 2.0, 10.0, 20.0], "bbox_mode": 0, "category_id": 0, "class": "person", "id": 1}
    write_sequence(root / "SFU_HW_Obj", "Traffic_64x40_30_val", 64, 40, 30, 2, 3, [person | {"image_id": 1.0}])
    small = {"Traffic": {"width": 64, "height": 40}}
    ds = build(root, tmp_path, classes=["CLASS-AB"], class_labels="cttc", extra_sequences=small)
    ((traffic),) = ds.sequences
    assert (traffic.name, traffic.seq_class, traffic.fps, len(traffic.frames)) == ("Traffic", "CLASS-AB", 30.0, 2)
    gt = json.loads(ds.annotation_file.read_text())["annotations"]
    assert [(a["image_id"], a["category_id"], a["area"]) for a in gt] == [(1_000_001, 1, 200.0)]
    assert [s.seq_class for s in build(root, tmp_path, extra_sequences=small).sequences] == ["A", "C", "D"]
    with pytest.raises(DatasetError, match="dataset.class_labels='CTTC'"):
        build(root, tmp_path, class_labels="CTTC")


def make_yuv(root: Path) -> Path:
    """The smallest YUV-layout tree: one 2-frame 64x48 YUV and one frame's txt."""
    root.mkdir(parents=True)
    (root / "Tiny_64x48_30.yuv").write_bytes(bytes([128]) * (64 * 48 * 3 // 2) * 2)
    (root / "annotations" / "Tiny").mkdir(parents=True)
    (root / "annotations" / "Tiny" / "Tiny_000.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    return root


@pytest.mark.timeout(60)
def test_layout_detection(tmp_path):
    root = make_fcm(tmp_path)
    data = root / "SFU_HW_Obj"
    yuv = make_yuv(tmp_path / "yuv")
    assert sfu_hw_fcm.fcm_layout(root, "auto", root) == sfu_hw_fcm.FcmRoot(data)  # fcm_testdata
    assert sfu_hw_fcm.fcm_layout(data, "auto", data) == sfu_hw_fcm.FcmRoot(data)  # its SFU_HW_Obj
    one = sfu_hw_fcm.fcm_layout(data / BQSQUARE, None, data / BQSQUARE)  # one sequence's folder
    assert one == sfu_hw_fcm.FcmRoot(data, BQSQUARE)
    assert [s.name for s in build(data / BQSQUARE, tmp_path).sequences] == ["BQSquare"]
    assert sfu_hw_fcm.fcm_layout(yuv, "auto", yuv) is None and sfu_hw_fcm.fcm_layout(root, "yuv", root) is None
    tiny = build(yuv, tmp_path, extra_sequences={"Tiny": {"class": "T"}})
    assert isinstance(tiny, sfu_hw.SfuHwObjects) and [s.name for s in tiny.sequences] == ["Tiny"]
    cases = [
        (yuv, {"layout": "fcm"}, "dataset.layout=fcm: no folder"),
        (root, {"layout": "yuv"}, "no SFU-HW-Objects YUV found"),
        (root, {"layout": "both"}, "dataset.layout='both': use one of ['auto', 'yuv', 'fcm']"),
    ]
    shutil.copy(yuv / "Tiny_64x48_30.yuv", data)
    cases.append((data, {}, "holds both FCM sequence folders"))
    for where, kw, text in cases:
        with pytest.raises(DatasetError) as err:
            build(where, tmp_path, **kw)
        assert text in str(err.value) and "\n" not in str(err.value)
    assert len(build(data, tmp_path, layout="fcm")) == 2
    cfg = OmegaConf.load(CONF_DIR / "dataset" / "sfu_hw_objects.yaml")
    cfg.root, cfg.cache_dir = str(root), str(tmp_path / "cache")
    ds = instantiate(cfg)
    assert ds.name == "sfu_hw_objects" and ds.classes == ["C", "D"] and len(ds.sequences[1].frames) == 3


def _break(root: Path, case: str) -> tuple[dict, Path, str]:
    """Break the fcm_testdata tree at `root`: (build kwargs, the path the error names, its text)."""
    folder = root / "SFU_HW_Obj" / BQSQUARE
    ann, ini = folder / "annotations" / f"{BQSQUARE}.json", folder / "seqinfo.ini"
    coco = json.loads(ann.read_text())
    if case == "missing_json":
        ann.rename(ann.with_name("renamed.json"))
        return {}, ann, "the folder holds renamed.json"
    if case == "missing_image":
        (folder / "images" / f"{BQSQUARE}_002.png").unlink()
        return {}, folder / "images" / f"{BQSQUARE}_002.png", "holds 2 PNGs of the 3 frames the json lists"
    if case == "missing_images_folder":
        shutil.rmtree(folder / "images")
        return {}, folder / "images", "image folder not found"
    if case == "missing_seqinfo":
        ini.unlink()
        return {}, ini, "sequence info not found"
    if case == "bad_json":
        ann.write_text('{"images": [')
        return {}, ann, "not a readable json"
    if case == "frame_rate":
        set_ini(ini, frameRate=50)
        return {}, ini, "frameRate=50 but the folder name"
    if case == "png_size":
        Image.fromarray(pixels(64, 48, 2, 0)).save(folder / "images" / f"{BQSQUARE}_000.png")
        return {}, folder / "images" / f"{BQSQUARE}_000.png", "frame is 64x48 but"
    if case == "image_id":
        coco["images"][1]["id"] = 0.5
        ann.write_text(json.dumps(coco))
        return {}, ann, "images[1] has id 0.5"
    if case == "category_range":
        coco["annotations"][3]["category_id"] = 80
        ann.write_text(json.dumps(coco))
        return {}, ann, f"annotation id {coco['annotations'][3]['id']} has category_id 80"
    if case == "category_not_index":  # a real COCO id where the 0-based index belongs: chair (56) as 62
        chair = next(a for a in coco["annotations"] if a["class"] == "chair")
        chair["category_id"] = 62
        ann.write_text(json.dumps(coco))
        return {}, ann, f"annotation id {chair['id']} has category_id 62 (index of 'tv') but class 'chair'"
    if case == "frame_window":
        return {"frame_window": {"BQSquare": [0, 2]}}, Path("dataset.frame_window"), "dataset.max_frames"
    if case == "extra_count":
        return (
            {"extra_sequences": {"BQSquare": {"count": 2}}},
            Path("dataset.extra_sequences.BQSquare.count"),
            "remove it",
        )
    raise AssertionError(case)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "case",
    [
        "missing_json",
        "missing_image",
        "missing_images_folder",
        "missing_seqinfo",
        "bad_json",
        "frame_rate",
        "png_size",
        "image_id",
        "category_range",
        "category_not_index",
        "frame_window",
        "extra_count",
    ],
)
def test_broken_fcm_folder_gives_one_line_error(tmp_path, case):
    root = make_fcm(tmp_path)
    build(root, tmp_path)  # cached: each break must be seen on a later build too
    kwargs, path, text = _break(root, case)
    with pytest.raises(DatasetError) as err:
        build(root, tmp_path, **kwargs)
    msg = str(err.value)
    assert str(path) in msg and text in msg and "\n" not in msg


@pytest.mark.timeout(60)
def test_fcm_cache_reused_and_rebuilt(tmp_path):
    root = make_fcm(tmp_path)
    ds = build(root, tmp_path)
    stamp = ds.annotation_file.stat().st_mtime_ns
    again = build(root, tmp_path, max_frames=2)
    assert again.annotation_file == ds.annotation_file and again.annotation_file.stat().st_mtime_ns == stamp
    assert [len(s.frames) for s in again.sequences] == [2, 2]
    ann = root / "SFU_HW_Obj" / BQSQUARE / "annotations" / f"{BQSQUARE}.json"
    coco = json.loads(ann.read_text())
    coco["annotations"] = coco["annotations"][:1]
    ann.write_text(json.dumps(coco))
    rebuilt = json.loads(build(root, tmp_path).annotation_file.read_text())
    assert sum(a["image_id"] >= 2_000_000 for a in rebuilt["annotations"]) == 1


@pytest.mark.timeout(60)
def test_short_images_folder_names_the_yuv_window(tmp_path):
    """Frames cut at another window than the json's (as prepare_sfu_data.py does for 6 sequences): the
    error says which frames of the YUV the json's are, from the table's window."""
    data = tmp_path / "SFU_HW_Obj"
    folder = write_sequence(data, "Traffic_64x40_30_val", 64, 40, 30, 33, 1, [])
    for k in range(29, 33):
        (folder / "images" / f"Traffic_64x40_30_val_{k:03d}.png").unlink()
    with pytest.raises(DatasetError) as err:
        build(data, tmp_path, extra_sequences={"Traffic": {"width": 64, "height": 40}})
    msg = str(err.value)
    assert str(folder / "images" / "Traffic_64x40_30_val_029.png") in msg and "\n" not in msg
    assert "holds 29 PNGs of the 33 frames the json lists: write frames 117..149 of the sequence's YUV" in msg


@pytest.mark.timeout(60)
def test_cttc_class_names_apply_to_the_yuv_layout_too(tmp_path):
    yuv = make_yuv(tmp_path / "yuv")
    kw = {"extra_sequences": {"Tiny": {"class": "B"}}, "frame_window": {"Tiny": [0, 2]}}
    ds = build(yuv, tmp_path, classes=["CLASS-AB"], class_labels="cttc", **kw)
    assert [(s.name, s.seq_class) for s in ds.sequences] == [("Tiny", "CLASS-AB")]
    assert [s.seq_class for s in build(yuv, tmp_path, classes="b", **kw).sequences] == ["B"]
