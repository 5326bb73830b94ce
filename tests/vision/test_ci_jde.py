"""The offline CI JDE (`model=ci_jde`): JDE's architecture family, split like JDE bit for bit, and its
in-project training (`vcmbench train-jde`: JDE's losses on synthetic videos, checkpoint + json)."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_module

from tests.assets import coco_mini_image_paths
from vcmbench.cli import main
from vcmbench.datasets.images import read_rgb
from vcmbench.errors import CheckpointError, ConfigError
from vcmbench.train.jde import TrainVideos, train_jde
from vcmbench.train.jde_loss import assign
from vcmbench.vision.ci_jde import build, build_network, ci_jde_layers
from vcmbench.vision.jde import JDESplit
from vcmbench.vision.jde_cfg import Conv, Route, Shortcut, Yolo

pytestmark = pytest.mark.timeout(120)

# a random network's confidences reach about 0.9: a high threshold keeps NMS quick and still leaves
# hundreds of detections to compare
CONF = 0.7

# what each preset sends at 256x256, in order: (name, channels, height, width)
TVD = [("l15", 64, 32, 32), ("l22", 128, 16, 16), ("l26", 256, 8, 8)]
HIEVE = [("l57", 32, 32, 32), ("l42", 64, 16, 16), ("l27", 128, 8, 8)]

# a network small enough to train a few steps in seconds (the same builder, other sizes)
TINY = [
    "model.stem=4",
    "model.widths=[4,8,8,16,16]",
    "model.blocks=[0,0,1,0,0]",
    "model.head_widths=[16,8,8]",
    "model.embedding_dim=8",
    "model.width=64",
    "model.height=64",
    "model.conf_thres=0.6",
]


@pytest.fixture(scope="module")
def net_split() -> JDESplit:
    return build(weights="none", seed=0, split="tvd", conf_thres=CONF)


def _preset(split: JDESplit, preset: str) -> JDESplit:
    """The network of `split` cut at another preset."""
    layers = ci_jde_layers()[1][preset]
    return JDESplit(split.net, layers, "ci_jde", CONF, width=256, height=256, split_tag=preset)


@pytest.fixture(scope="module")
def frames() -> list[torch.Tensor]:
    """A synthetic video frame (the network's own size) and a real 640x426 photo (letterboxed)."""
    from vcmbench.datasets.synthetic_video import SequencePlan, parse_sequences

    spec = parse_sequences([{"name": "s", "frames": 3}])[0]
    image, _ = SequencePlan(5, 0, spec, 256, 256).frame(1)
    return [torch.from_numpy(image).permute(2, 0, 1).contiguous(), read_rgb(coco_mini_image_paths(1)[0])]


def test_layers_are_jdes_family():
    """Darknet's residual stages and JDE's head layout; the presets are the body's stage ends at
    strides 8/16/32 (tvd) and each head's first convolution (hieve), as for JDE."""
    layers, presets = ci_jde_layers()
    assert len(layers) == 68
    assert sum(isinstance(layer, Shortcut) for layer in layers) == 7
    yolos = [i for i, layer in enumerate(layers) if isinstance(layer, Yolo)]
    assert yolos == [37, 52, 67]
    assert presets == {"tvd": (15, 22, 26), "hieve": (57, 42, 27)}
    for i in presets["hieve"]:
        assert layers[i] == Conv(layers[i].filters, 1)
    for i in yolos:  # prediction, route back, embedding, route joining them, YOLO: JDE's head end
        assert layers[i - 4 : i] == (
            Conv(24, 1, batch_norm=False, leaky=False),
            Route((-3,)),
            Conv(64, 3, batch_norm=False, leaky=False),
            Route((-3, -1)),
        )


@pytest.mark.parametrize(("preset", "sent"), [("tvd", TVD), ("hieve", HIEVE)])
def test_split_tensors(net_split, frames, preset, sent):
    split = _preset(net_split, preset)
    assert split.name == f"ci_jde@{preset}"
    assert split.feature_names == tuple(n for n, *_ in sent)
    assert split.feature_shapes == {n: (c, h, w) for n, c, h, w in sent}
    out = split.front(frames[0])
    assert list(out.features) == [n for n, *_ in sent]
    assert [tuple(t.shape) for t in out.features.values()] == [(c, h, w) for _, c, h, w in sent]
    assert all(t.dtype == torch.float32 for t in out.features.values())


@pytest.mark.parametrize("preset", ["tvd", "hieve"])
def test_front_back_equals_full(net_split, frames, preset):
    """Bit for bit on random weights, boxes, scores and embeddings, on enough detections to mean it."""
    split = _preset(net_split, preset)
    for frame in frames:
        reference = split.full(frame)
        out = split.front(frame)
        got = split.back(out.features, out.meta)
        assert len(reference) >= 50
        for field in ("boxes", "scores", "labels", "embeddings"):
            assert torch.equal(getattr(got, field), getattr(reference, field)), field
        assert reference.embeddings.shape == (len(reference), 64)
        assert torch.allclose(reference.embeddings.norm(dim=1), torch.ones(len(reference)))
    assert reference.boxes[:, 2].max() > 300  # the photo's detections are in its own pixels


def test_back_depends_on_features(net_split, frames):
    out = net_split.front(frames[0])
    reference = net_split.back(out.features, out.meta)
    changed = dict(out.features)
    changed["l22"] = changed["l22"] * 0.5
    assert not torch.equal(net_split.back(changed, out.meta).scores, reference.scores)


def test_split_setting_and_tracker_settings():
    split = build(weights="none", split="hieve", conf_thres=0.9)
    assert split.split_layers == (57, 42, 27) and split.split == "hieve"
    assert build(weights="none", split=[15, 22, 26]).split == "tvd"
    assert build(weights="none", split="[27, 42, 57]").split == "l27-42-57"
    assert split.tracker_settings.min_box_area == 200  # JDE's, unless model.tracker says otherwise
    assert split.tracker_settings.conf_thres == 0.9  # the tracker keeps what the network outputs
    assert build(weights="none", tracker={"min_box_area": 0}).tracker_settings.min_box_area == 0
    with pytest.raises(ConfigError, match=r"model.tracker.max_area: not a JDE tracker setting"):
        build(weights="none", tracker={"max_area": 1})
    with pytest.raises(ConfigError, match="multiple of 32"):
        build(weights="none", width=250)


def test_missing_checkpoint_is_one_line(tmp_path):
    with pytest.raises(
        CheckpointError, match=r"model.weights=.*missing.pt: no such checkpoint .*`vcmbench train-jde .*weights=none"
    ) as err:
        build(weights=str(tmp_path / "missing.pt"))
    assert "\n" not in str(err.value)


def test_checkpoint_of_another_architecture_is_one_line(tmp_path):
    net, _ = build_network(0, embedding_dim=32)
    torch.save({k: v.half() for k, v in net.state_dict().items()}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"does not fit this ci_jde configuration") as err:
        build(weights=str(tmp_path / "other.pt"))
    assert "\n" not in str(err.value)


def test_assignment_is_jdes_with_the_best_anchor():
    """A target centred on a cell corner with an anchor's size: foreground there with zero deltas and
    its identity; a target too small to overlap any anchor above 0.5 still gets its best one."""
    anchors = torch.tensor([[2.0, 2.0], [4.0, 4.0]])
    tconf, tbox, tid = assign(torch.tensor([[7.0, 3.0, 5.0, 4.0, 4.0]]), anchors, (8, 8))
    assert torch.equal(tbox[1, 5, 3], torch.zeros(4))
    # the big anchor there and one cell away (IoU 12/20 = 0.6) are foreground, diagonally (9/23) not
    fg = {tuple(i) for i in torch.nonzero(tconf == 1).tolist()}
    assert fg == {(1, 5, 3), (1, 4, 3), (1, 6, 3), (1, 5, 2), (1, 5, 4)}
    assert torch.equal(torch.nonzero(tid == 7), torch.nonzero(tconf == 1))
    assert torch.allclose(tbox[1, 5, 4], torch.tensor([-0.25, 0.0, 0.0, 0.0]))
    assert int((tconf == -1).sum()) == 0
    small = torch.tensor([[3.0, 2.5, 2.5, 0.7, 0.7]])
    assert int((assign(small, anchors, (8, 8), best_anchor=False)[0] == 1).sum()) == 0
    tconf, _, tid = assign(small, anchors, (8, 8))
    assert int((tconf == 1).sum()) == 1 and int(tid.max()) == 3


def _tiny_cfg(tmp_path, *extra: str):
    with initialize_config_module("vcmbench.conf", version_base="1.3"):
        return compose(
            "train_jde",
            overrides=[
                *TINY,
                "steps=10",
                "batch_size=4",
                "frames_per_sequence=2",
                "threads=1",
                "optimizer.lr=0.01",
                "optimizer.warmup_steps=0",
                "train.sequences=6",
                "train.frames=6",
                "train.objects=[2,4]",
                "val.all_frames=false",
                "val.calibration.sequences=2",
                "val.calibration.frames=3",
                "val.calibration.thresholds=[0.6,0.8]",
                "val.dataset.height=64",
                "val.dataset.width=64",
                "val.dataset.sequences=[{name: a, class: A, frames: 3, objects: [2, 3]}, {name: b, class: B, frames: 2, objects: 2}]",
                f"val.dataset.cache_dir={tmp_path / 'cache'}",
                "progress=false",
                "log_every=5",
                *extra,
            ],
        )


def test_training_batches_are_a_function_of_the_step(tmp_path):
    videos = TrainVideos(_tiny_cfg(tmp_path).train, 64, 64)
    images, targets = videos.batch(3, 4, 2)
    again, targets2 = videos.batch(3, 4, 2)
    assert images.shape == (4, 3, 64, 64) and torch.equal(images, again)
    assert all(torch.equal(a, b) for a, b in zip(targets, targets2))
    assert videos.n_ids == 6 * 4
    ids = torch.cat(targets)[:, 0]
    assert ids.min() >= 0 and ids.max() < videos.n_ids
    # frames 0, 1 are of one sequence, 2, 3 of another: identities index * max_objects + track - 1
    first = {int(i) // 4 for t in targets[:2] for i in t[:, 0]}
    second = {int(i) // 4 for t in targets[2:] for i in t[:, 0]}
    assert len(first) == 1 and len(second) == 1 and first != second


def test_a_few_steps_lower_the_loss_and_write_the_checkpoint(tmp_path):
    info = train_jde(_tiny_cfg(tmp_path), str(tmp_path / "out"))
    losses = info["losses"]
    assert len(losses) == 10 and sum(losses[-3:]) < sum(losses[:3])
    stored = json.loads((tmp_path / "out" / "ci_jde.json").read_text())
    assert stored["steps"] == 10 and stored["train_data"]["identities"] == 24
    assert stored["splits"]["tvd"]["shapes"] == [[8, 8, 8], [16, 4, 4], [16, 2, 2]]
    assert stored["macs_per_frame"] > stored["splits"]["tvd"]["front_macs"] > 0
    val = stored["val"]
    assert (val["sequences"], val["frames"]) == (2, 5)
    assert set(val) >= {"A", "B", "all"} and "mota" in val["all"] and "mota_byte_tracker" in val["all"]
    assert val["tracker_settings"]["min_box_area"] == 0  # the model's tracker settings
    assert val["conf_thres"] == val["tracker_settings"]["conf_thres"] == 0.6
    cal = stored["calibration"]
    assert cal["frames"] == 6 and cal["sequence_indices"] == [6, 7] and set(cal["mota_by_conf_thres"]) == {"0.6", "0.8"}
    assert cal["best_conf_thres"] in (0.6, 0.8) and cal["val_at_best"]["conf_thres"] == cal["best_conf_thres"]
    assert not (tmp_path / "out" / "train_state.pt").exists()
    state = torch.load(tmp_path / "out" / "ci_jde.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert not any("classifier" in k for k in state)
    kw = {o.split("=")[0].removeprefix("model."): json.loads(o.split("=")[1]) for o in TINY}
    split = build(weights=str(tmp_path / "out" / "ci_jde.pt"), **kw)
    assert split.net.state_dict()["module_list.0.conv_0.weight"].dtype == torch.float32


def test_train_jde_command_refuses_bad_settings_in_one_line(tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["train-jde", "batch_size=3", "frames_per_sequence=2", f"hydra.run.dir={tmp_path / 'out'}"])
    except SystemExit as exc:  # an error inside the Hydra app exits
        code = exc.code
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("vcmbench: error: steps=") and "multiple of frames_per_sequence" in lines[0]


def test_training_on_the_held_out_seed_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"train.seed=2000000 is the held-out set's"):
        train_jde(_tiny_cfg(tmp_path, "train.seed=2000000"), str(tmp_path / "out"))


def test_an_interrupted_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    cfg = _tiny_cfg(tmp_path, "steps=4", "checkpoint_every=2", "val.enabled=false")
    train_jde(cfg, str(tmp_path / "whole"))
    batch = TrainVideos.batch

    def failing(self, step, *args):
        if step == 3:
            raise RuntimeError("interrupted")
        return batch(self, step, *args)

    monkeypatch.setattr(TrainVideos, "batch", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        train_jde(cfg, str(tmp_path / "resumed"))
    assert (tmp_path / "resumed" / "train_state.pt").is_file()
    monkeypatch.setattr(TrainVideos, "batch", batch)
    info = train_jde(cfg, str(tmp_path / "resumed"))
    assert len(info["losses"]) == 2  # steps 2 and 3 only
    whole = torch.load(tmp_path / "whole" / "ci_jde.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "ci_jde.pt", weights_only=True)
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)
