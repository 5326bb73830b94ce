"""JDE at 1088x608 (random weights, the real architecture) split at the CTTC's layers must reproduce
the unsplit network bit for bit; its letterbox, layer facts and weight errors are JDE's."""

from __future__ import annotations

import pytest
import torch

from tests.assets import coco_mini_image_paths
from vcmbench.datasets.images import read_rgb
from vcmbench.errors import CheckpointError, ConfigError, ShapeError
from vcmbench.types import ImageMeta
from vcmbench.vision.jde import JDESplit, build, letterbox, parse_split, scale_to_frame
from vcmbench.vision.jde_cfg import ANCHORS, JDE_LAYERS, Conv, Route, Shortcut, Yolo, layer_shapes

pytestmark = pytest.mark.timeout(300)

# a high threshold for a random network keeps NMS quick (its confidences reach about 0.87) and
# still leaves over a thousand detections to compare
CONF = 0.7

# (name, channels, height, width) of what each preset sends for a 1088x608 input, in order
TVD = [("l36", 256, 76, 136), ("l61", 512, 38, 68), ("l74", 1024, 19, 34)]
HIEVE = [("l105", 128, 76, 136), ("l90", 256, 38, 68), ("l75", 512, 19, 34)]


@pytest.fixture(scope="module")
def frame() -> torch.Tensor:
    """A real 640x426 photo: not 16:9, so the letterbox pads 87 and 88 columns."""
    return read_rgb(coco_mini_image_paths(1)[0])


@pytest.fixture(scope="module")
def jde() -> JDESplit:
    return build(weights="none", seed=0, split="tvd", conf_thres=CONF)


@pytest.fixture(scope="module")
def reference(jde, frame):
    return jde.full(frame)


@pytest.fixture(scope="module")
def fronts(jde, frame):
    """Both presets' splits over the one network, and their fronts on the frame."""
    splits = {"tvd": jde, "hieve": JDESplit(jde.net, parse_split("hieve")[1], conf_thres=CONF, split_tag="hieve")}
    return {k: (s, s.front(frame)) for k, s in splits.items()}


def test_layers_are_the_cfgs():
    assert len(JDE_LAYERS) == 116
    assert [i for i, layer in enumerate(JDE_LAYERS) if isinstance(layer, Yolo)] == [85, 100, 115]
    assert all(isinstance(JDE_LAYERS[i], Shortcut) for i in (36, 61, 74))
    assert JDE_LAYERS[89] == Route((-1, 61)) and JDE_LAYERS[104] == Route((-1, 36))
    assert JDE_LAYERS[86] == JDE_LAYERS[101] == Route((-7,))
    assert JDE_LAYERS[83] == Conv(512, 3, batch_norm=False, leaky=False)  # the embedding branch
    assert JDE_LAYERS[81] == Conv(24, 1, batch_norm=False, leaky=False)  # 4 anchors x 6
    shapes = layer_shapes()
    facts = {36: (256, 8), 61: (512, 16), 74: (1024, 32), 75: (512, 32), 90: (256, 16), 105: (128, 8)}
    assert {i: (shapes[i].channels, shapes[i].stride) for i in facts} == facts
    assert [JDE_LAYERS[i].anchor_ids for i in (85, 100, 115)] == [(8, 9, 10, 11), (4, 5, 6, 7), (0, 1, 2, 3)]
    assert ANCHORS[0] == (8, 24) and ANCHORS[11] == (512, 640)


@pytest.mark.parametrize("preset, sent", [("tvd", TVD), ("hieve", HIEVE)], ids=["tvd", "hieve"])
def test_front_back_equals_unsplit(preset, sent, fronts, reference):
    split, front = fronts[preset]
    assert split.name == f"jde_1088x608@{preset}"
    assert list(split.feature_names) == [n for n, *_ in sent]
    assert split.feature_strides == dict(zip(split.feature_names, (8, 16, 32)))
    assert [(n, *front.features[n].shape) for n in front.features] == sent
    assert split.feature_channels == {n: c for n, c, *_ in sent}
    out = split.back(front.features, front.meta)
    assert len(reference) >= 50, "the random network must detect plenty at this threshold"
    assert torch.equal(out.boxes, reference.boxes)
    assert torch.equal(out.scores, reference.scores)
    assert torch.equal(out.labels, reference.labels)
    assert torch.equal(out.embeddings, reference.embeddings)


def test_detections_are_jdes(reference, frame):
    n = len(reference)
    assert reference.boxes.shape == (n, 4) and reference.embeddings.shape == (n, 512)
    assert reference.embeddings.dtype == torch.float32
    assert torch.allclose(reference.embeddings.norm(dim=1), torch.ones(n), atol=1e-5)  # unit, as the tracker takes them
    assert (reference.scores > CONF).all() and torch.all(reference.scores[:-1] >= reference.scores[1:])
    assert (reference.labels == 0).all()
    assert (reference.boxes >= 0).all()  # clamped at 0 in frame pixels (JDE clamps nothing else)
    assert reference.scores.unique().numel() > n // 2, "distinct scores: the random network is not constant"


def test_back_depends_on_features(fronts, reference):
    split, front = fronts["hieve"]
    noisy = dict(front.features)
    noisy["l90"] = noisy["l90"] + torch.randn(noisy["l90"].shape, generator=torch.Generator().manual_seed(1))
    out = split.back(noisy, front.meta)
    assert len(out) != len(reference) or not torch.equal(out.scores, reference.scores)


def test_back_rejects_wrong_tensors(fronts):
    split, front = fronts["tvd"]
    with pytest.raises(ShapeError, match=r"JDE features are \['l36', 'l61'\]; .* sends \['l36', 'l61', 'l74'\]"):
        split.back({k: front.features[k] for k in ("l36", "l61")}, front.meta)
    bad = dict(front.features, l61=front.features["l61"][:256])
    with pytest.raises(ShapeError, match=r"l61 has shape \(256, 38, 68\); .* expects \(512, 38, 68\)") as err:
        split.back(bad, front.meta)
    assert "\n" not in str(err.value)


def test_letterbox_of_a_4_3_frame_and_back():
    image = torch.randint(0, 256, (3, 480, 640), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x, meta = letterbox(image)
    # gain min(608/480, 1088/640) = 1.2667: 811 x 608, padded 138 left and 139 right
    assert x.shape == (1, 3, 608, 1088) and x.dtype == torch.float32
    assert meta == ImageMeta(original_size=(480, 640), resized_size=(608, 811), padded_size=(608, 1088))
    assert (x[..., :138] == 128 / 255).all() and (x[..., 949:] == 128 / 255).all()  # 127.5 rounds to 128
    assert not (x[..., 138] == 128 / 255).all() and not (x[..., 948] == 128 / 255).all()
    # the content's corners map to the frame's; a box in the padding clamps to 0
    gain, pad = 608 / 480, (1088 - 640 * 608 / 480) / 2
    content = torch.tensor([[pad, 0.0, pad + 640 * gain, 608.0], [0.0, 10.0, pad / 2, 20.0]])
    mapped = scale_to_frame(content, meta)
    assert torch.allclose(mapped[0], torch.tensor([0.0, 0.0, 640.0, 480.0]), atol=1e-3)
    assert (
        mapped[1, 0] == 0 and mapped[1, 2] == 0 and torch.allclose(mapped[1, 1:4:2], torch.tensor([10.0, 20.0]) / gain)
    )


def test_letterbox_of_a_tall_frame():
    image = torch.zeros((3, 400, 200), dtype=torch.uint8)
    x, meta = letterbox(image)
    # gain 608/400 = 1.52: 304 x 608, padded 392 on each side
    assert meta.resized_size == (608, 304)
    assert (x[..., :392] == 128 / 255).all() and (x[..., 392:696] == 0).all() and (x[..., 696:] == 128 / 255).all()


def test_split_settings():
    assert parse_split("TVD") == ("tvd", (36, 61, 74))
    assert parse_split([105, 90, 75]) == ("hieve", (105, 90, 75))
    assert parse_split("[36, 61]") == ("l36-61", (36, 61))
    with pytest.raises(ConfigError, match="choose tvd"):
        parse_split("fpn")


@pytest.mark.parametrize(
    "layers, message",
    [
        ([61, 74], "layer 0 still needs the image"),  # route 104 reads layer 36, which needs the image
        ([36, 61, 74, 75], "layer 74 is never read by the back"),
        ([36, 61, 85], "layer 85 is a YOLO block"),
        ([36, 61, 116], "layer 116 does not exist"),
    ],
)
def test_bad_splits_are_refused(jde, layers, message):
    with pytest.raises(ConfigError, match=message):
        JDESplit(jde.net, layers)


def test_missing_weights_file_is_one_line(tmp_path):
    with pytest.raises(
        CheckpointError, match=r"model.weights=.*missing.pt: no such file\. .*model.weights=none"
    ) as err:
        build(weights=str(tmp_path / "missing.pt"))
    assert "\n" not in str(err.value)


def test_jde_checkpoint_loads(jde, tmp_path):
    """A checkpoint as JDE's train.py saves it: {'epoch', 'model', 'optimizer'}, with the identity
    classifier and the YOLO blocks' loss weights that inference does not use."""
    state = {k: v.half() for k, v in jde.net.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["classifier.weight"] = torch.zeros(14455, 512, dtype=torch.half)
    state["module_list.85.yolo_85.s_c"] = torch.tensor([-4.15])
    torch.save({"epoch": 29, "model": state, "optimizer": []}, tmp_path / "jde.pt")
    again = build(weights=str(tmp_path / "jde.pt"), seed=1)
    key = "module_list.83.conv_83.weight"
    assert torch.equal(again.net.state_dict()[key], state[key].float())
    torch.save({"model": {"backbone.conv.weight": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"not a JDE yolov3 checkpoint: \d+ tensors missing .* 1 unknown"):
        build(weights=str(tmp_path / "other.pt"))
