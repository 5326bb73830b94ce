"""JDE's architecture as data: the layers of Towards-Realtime-MOT's `cfg/yolov3_1088x608.cfg`.

JDE (Wang et al., "Towards Real-Time Multi-Object Tracking", ECCV 2020) is a YOLOv3: a Darknet-53
body and three YOLO heads (strides 32, 16, 8), each with a second branch that predicts a
512-dimensional appearance embedding per grid cell. The MPEG FCM common test conditions split it
by *layer index* (TVD at [36, 61, 74], HiEve at [105, 90, 75]), so the indices must be exactly the
cfg's: layer i here is the i-th block after `[net]` in that file, and `JDE_LAYERS` is checked
against the numbers the split points rely on (`tests/vision/test_jde_split.py`).

The list is generated from the structure rather than written out block by block (116 blocks),
because the structure is what a reader checks: five down-sampling stages of 1, 2, 8, 8 and 4
residual blocks, then per scale five alternating 1x1/3x3 convolutions, a 3x3 convolution, the
linear 1x1 prediction (4 anchors x (4 box deltas + 2 confidence logits) = 24 channels), a route
back to the fifth convolution, the linear 3x3 embedding convolution, a route joining prediction
and embedding, and the YOLO block that decodes them. The two finer scales start with a route back
to the previous scale's fifth convolution, a 1x1 convolution, a 2x nearest upsample and a route
that concatenates the body's layer of that stride (61, then 36).

Conventions shared with the Darknet cfg format (and JDE's `models.py` reading of it): every
convolution pads (size - 1) // 2; a convolution with batch norm has no bias; "leaky" is
LeakyReLU(0.1); a route index < 0 is relative to the route's own index, >= 0 absolute; a route of
several layers concatenates them along channels; a shortcut adds the previous layer's output and
the one `source` layers back.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Conv",
    "Shortcut",
    "Route",
    "Upsample",
    "Yolo",
    "Layer",
    "LayerShape",
    "JDE_WIDTH",
    "JDE_HEIGHT",
    "EMBEDDING_DIM",
    "ANCHORS",
    "PRED_PER_ANCHOR",
    "JDE_LAYERS",
    "layer_inputs",
    "layer_shapes",
    "head_layers",
]


@dataclass(frozen=True)
class Conv:
    """A [convolutional] block: Conv2d, then BatchNorm2d and LeakyReLU(0.1) where the cfg says so."""

    filters: int
    size: int
    stride: int = 1
    batch_norm: bool = True
    leaky: bool = True


@dataclass(frozen=True)
class Shortcut:
    """A [shortcut] block: the previous output plus the output `source` (< 0) layers back."""

    source: int


@dataclass(frozen=True)
class Route:
    """A [route] block: one earlier output, or several concatenated along channels."""

    sources: tuple[int, ...]


@dataclass(frozen=True)
class Upsample:
    """An [upsample] block: nearest-neighbour up-sampling by `factor`."""

    factor: int


@dataclass(frozen=True)
class Yolo:
    """A [yolo] block: decodes the concatenated prediction and embedding maps of one scale.
    `anchor_ids` pick this scale's anchors from `ANCHORS` (the cfg's `mask`)."""

    anchor_ids: tuple[int, ...]


Layer = Conv | Shortcut | Route | Upsample | Yolo

JDE_WIDTH = 1088  # [net] width: the letterboxed input's width in pixels
JDE_HEIGHT = 608  # [net] height
IN_CHANNELS = 3  # [net] channels: RGB
EMBEDDING_DIM = 512  # [net] embedding_dim: the embedding convolutions' filters ($embedding_dim)
NUM_CLASSES = 1  # every [yolo] block's classes: pedestrians only

# (width, height) in input pixels, the cfg's 12 anchors; each scale takes four (its `mask`): all
# have JDE's 1:3 pedestrian aspect except the two largest
ANCHORS: tuple[tuple[float, float], ...] = (
    (8, 24), (11, 34), (16, 48), (23, 68),
    (32, 96), (45, 135), (64, 192), (90, 271),
    (128, 384), (180, 540), (256, 640), (512, 640),
)  # fmt: skip
ANCHORS_PER_SCALE = 4
# what a YOLO block reads per anchor: box deltas (dx, dy, dw, dh) and two confidence logits
# (background, object); JDE's models.py cuts the first 4 x 6 = 24 channels as the prediction
PRED_PER_ANCHOR = 4 + 2

_BODY_STAGES = ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4))  # (width, residual blocks) per stride 2..32


def _darknet53() -> list[Layer]:
    """Layers 0..74: a 3x3 stem, then per stage a stride-2 3x3 convolution and its residual blocks
    (1x1 to half the width, 3x3 back, shortcut over both). Stage ends: 4, 11, 36, 61, 74."""
    layers: list[Layer] = [Conv(32, 3)]
    for width, blocks in _BODY_STAGES:
        layers.append(Conv(width, 3, stride=2))
        for _ in range(blocks):
            layers += [Conv(width // 2, 1), Conv(width, 3), Shortcut(-3)]
    return layers


def head_layers(width: int, anchor_ids: tuple[int, ...], embedding_dim: int = EMBEDDING_DIM) -> list[Layer]:
    """One scale's 11 layers: five convolutions alternating 1x1 (`width`) and 3x3 (2 x `width`),
    a 3x3 (2 x `width`), the linear prediction (one per anchor of `anchor_ids`), route back 3 (the
    fifth convolution), the linear embedding (`embedding_dim`), route (prediction, embedding) and the
    YOLO block. ci_jde's heads are these at its own widths."""
    return [
        Conv(width, 1),
        Conv(2 * width, 3),
        Conv(width, 1),
        Conv(2 * width, 3),
        Conv(width, 1),
        Conv(2 * width, 3),
        Conv(len(anchor_ids) * PRED_PER_ANCHOR, 1, batch_norm=False, leaky=False),
        Route((-3,)),
        Conv(embedding_dim, 3, batch_norm=False, leaky=False),
        Route((-3, -1)),
        Yolo(anchor_ids),
    ]


def _jde_layers() -> tuple[Layer, ...]:
    """The cfg's 116 layers: the body (0..74), the stride-32 head (75..85), the stride-16 head fed
    by layer 79 and body layer 61 (86..100), the stride-8 head fed by layer 94 and body layer 36
    (101..115)."""
    layers = _darknet53()
    layers += head_layers(512, (8, 9, 10, 11))
    for width, body_layer, anchor_ids in ((256, 61, (4, 5, 6, 7)), (128, 36, (0, 1, 2, 3))):
        layers += [Route((-7,)), Conv(width, 1), Upsample(2), Route((-1, body_layer))]
        layers += head_layers(width, anchor_ids)
    return tuple(layers)


JDE_LAYERS: tuple[Layer, ...] = _jde_layers()


def layer_inputs(layers: tuple[Layer, ...], index: int) -> tuple[int, ...]:
    """The layers whose outputs layer `index` reads, as absolute indices; -1 is the input image."""
    layer = layers[index]
    if isinstance(layer, Shortcut):
        return (index - 1, index + layer.source)
    if isinstance(layer, Route):
        return tuple(index + s if s < 0 else s for s in layer.sources)
    return (index - 1,)


@dataclass(frozen=True)
class LayerShape:
    """A layer output's channel count and stride (input pixels per output cell)."""

    channels: int
    stride: int


def layer_shapes(layers: tuple[Layer, ...] = JDE_LAYERS, in_channels: int = IN_CHANNELS) -> tuple[LayerShape, ...]:
    """Every layer's output channels and stride, as Darknet's cfg reader counts them (a YOLO
    block's entry is its input's: it has no feature map of its own)."""
    shapes: list[LayerShape] = []

    def of(i: int) -> LayerShape:
        return LayerShape(in_channels, 1) if i < 0 else shapes[i]

    for index, layer in enumerate(layers):
        sources = [of(i) for i in layer_inputs(layers, index)]
        if isinstance(layer, Conv):
            shapes.append(LayerShape(layer.filters, sources[0].stride * layer.stride))
        elif isinstance(layer, Upsample):
            shapes.append(LayerShape(sources[0].channels, sources[0].stride // layer.factor))
        elif isinstance(layer, Route):
            if len({s.stride for s in sources}) != 1:
                raise ValueError(f"layer {index}: route joins outputs of strides {[s.stride for s in sources]}")
            shapes.append(LayerShape(sum(s.channels for s in sources), sources[0].stride))
        else:  # shortcut (same shape as its inputs) or yolo (passes its input's shape on)
            shapes.append(sources[-1])
    return tuple(shapes)
