"""JDE's network: the cfg's layers (`jde_cfg`) as modules, run over any part of the graph.

A split network is the same layers run twice: the front up to the transmitted layers, the back
from them to the YOLO heads. So the network does not have one `forward`; `compute(targets, known)`
runs exactly the layers the targets depend on that are not already known, in index order, each
from the outputs of its `layer_inputs`. The unsplit model is `compute(heads, image)`; the split is
`compute(split layers, image)` then `compute(heads, those outputs)`. Both evaluate every layer on
the same input values with the same modules, which is why the back reproduces the unsplit
detections bit for bit. Outputs no later layer reads are dropped as soon as they are used (the
stride-2 stem alone holds 170 MB of activations for one 1088x608 frame).

Module and parameter names follow JDE's `models.py` (`module_list.{i}.conv_{i}`,
`module_list.{i}.batch_norm_{i}`), so its released checkpoints (`{"model": state_dict, ...}`, as
its `train.py` saves them and `track.py` loads them) load as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vcmbench.errors import CheckpointError
from vcmbench.vision.jde_cfg import (
    ANCHORS,
    JDE_LAYERS,
    PRED_PER_ANCHOR,
    Conv,
    Layer,
    Route,
    Shortcut,
    Upsample,
    Yolo,
    layer_inputs,
    layer_shapes,
)

IMAGE = -1  # the index `layer_inputs` gives the input image

# checkpoint entries JDE saves that inference never reads: the identity classifier its training
# loss uses (nID x 512) and each YOLO block's learned loss weights (s_c, s_r, s_id)
_TRAINING_ONLY = ("classifier.", ".s_c", ".s_r", ".s_id")


def _block(index: int, layer: Layer, in_channels: int) -> nn.Sequential:
    """Layer `index`'s modules, named as JDE's create_modules names them; parameter-free layers get
    an empty Sequential so that `module_list[i]` is layer i."""
    block = nn.Sequential()
    if isinstance(layer, Conv):
        conv = nn.Conv2d(
            in_channels,
            layer.filters,
            layer.size,
            stride=layer.stride,
            padding=(layer.size - 1) // 2,
            bias=not layer.batch_norm,
        )
        block.add_module(f"conv_{index}", conv)
        if layer.batch_norm:
            bn = nn.BatchNorm2d(layer.filters)
            # JDE initialises BN scales uniformly in [0, 1) (its models.py: faster convergence), so a
            # random network here has the activation statistics of a random JDE
            nn.init.uniform_(bn.weight)
            nn.init.zeros_(bn.bias)
            block.add_module(f"batch_norm_{index}", bn)
        if layer.leaky:
            block.add_module(f"leaky_{index}", nn.LeakyReLU(0.1))
    return block


class JDENetwork(nn.Module):
    """The layers of `layers` (default: JDE's cfg) with their convolutions; see the module doc."""

    def __init__(self, layers: tuple[Layer, ...] = JDE_LAYERS):
        super().__init__()
        self.layers = layers
        self.shapes = layer_shapes(layers)
        self.heads = tuple(i for i, layer in enumerate(layers) if isinstance(layer, Yolo))
        channels = [3] + [s.channels for s in self.shapes]  # channels[i + 1] is layer i's output
        self.module_list = nn.ModuleList(_block(i, layer, channels[i]) for i, layer in enumerate(layers))
        self.eval()

    def plan(self, targets: Iterable[int], known: Iterable[int]) -> list[int]:
        """The layers to run, in order, to get `targets` given the outputs in `known` (IMAGE for
        the input image): every layer the targets depend on that is not known. Dependencies not
        reachable from `known` show up as IMAGE in `missing_inputs`."""
        have = set(known)
        need: set[int] = set()
        stack = [t for t in targets if t not in have]
        while stack:
            i = stack.pop()
            if i in need or i in have or i == IMAGE:
                continue
            need.add(i)
            stack.extend(layer_inputs(self.layers, i))
        return sorted(need)

    def missing_inputs(self, steps: list[int], known: Iterable[int]) -> set[int]:
        """What `steps` read that neither they nor `known` provide (IMAGE when a step needs the image)."""
        have = set(known) | set(steps)
        return {j for i in steps for j in layer_inputs(self.layers, i) if j not in have}

    @torch.inference_mode()
    def compute(self, targets: Iterable[int], known: Mapping[int, Tensor]) -> dict[int, Tensor]:
        """Outputs of `targets` (1, C, H, W) from the `known` ones (IMAGE: the (1, 3, H, W) input)."""
        wanted = list(dict.fromkeys(targets))
        steps = self.plan(wanted, known)
        missing = self.missing_inputs(steps, known)
        if missing:
            raise ValueError(f"layers {sorted(missing)} are needed but neither given nor computable")
        last_read: dict[int, int] = {}
        for i in steps:
            for j in layer_inputs(self.layers, i):
                last_read[j] = i
        out: dict[int, Tensor] = dict(known)
        for i in steps:
            out[i] = self._run(i, out)
            for j in layer_inputs(self.layers, i):  # free what no later step reads
                if last_read.get(j) == i and j not in wanted:
                    out.pop(j, None)
        return {t: out[t] for t in wanted}

    def _run(self, index: int, out: Mapping[int, Tensor]) -> Tensor:
        """One layer, as JDE's Darknet.forward evaluates it."""
        layer = self.layers[index]
        sources = [out[j] for j in layer_inputs(self.layers, index)]
        if isinstance(layer, Conv):
            return self.module_list[index](sources[0])
        if isinstance(layer, Shortcut):
            return sources[0] + sources[1]  # previous output + the one `source` back
        if isinstance(layer, Route):
            return sources[0] if len(sources) == 1 else torch.cat(sources, 1)
        if isinstance(layer, Upsample):
            return F.interpolate(sources[0], scale_factor=layer.factor, mode="nearest")
        return sources[0]  # a YOLO block's output is its input maps; `head_candidates` decodes them

    def head_anchors(self, head: int) -> Tensor:
        """(4, 2) anchor (width, height) of YOLO block `head` in input pixels."""
        layer = self.layers[head]
        assert isinstance(layer, Yolo)
        return torch.tensor([ANCHORS[k] for k in layer.anchor_ids], dtype=torch.float32)


@torch.inference_mode()
def head_candidates(maps: Tensor, anchors: Tensor, stride: int, conf_thres: float) -> Tensor:
    """One YOLO block's detections above `conf_thres`, as JDE's YOLOLayer and tracker take them.

    `maps`: (1, A * 6 + D, H, W), the prediction (per anchor dx, dy, dw, dh and two confidence
    logits) then the D embedding channels. Returns (N, 6 + D) rows in (anchor, y, x) order (the
    order of JDE's `p.view(nB, -1, ...)`): box centre x, y, width, height in input pixels, the
    object confidence (softmax of the two logits, the object's), a zero class column (JDE's p_cls)
    and the L2-normalised embedding of the cell (shared by the cell's anchors). Selecting before
    decoding only skips rows JDE's `pred[:, :, 4] > conf_thres` discards: each kept row is computed
    by the same elementwise operations.
    """
    n_anchors = anchors.shape[0]
    n_pred = n_anchors * PRED_PER_ANCHOR
    _, _, gh, gw = maps.shape
    pred = maps[:, :n_pred].view(1, n_anchors, PRED_PER_ANCHOR, gh, gw).permute(0, 1, 3, 4, 2).contiguous()
    logits = pred[..., 4:6].permute(0, 4, 1, 2, 3)  # (1, 2, A, H, W), as JDE's p_conf
    conf = torch.softmax(logits, dim=1)[0, 1]  # (A, H, W)
    a, y, x = torch.nonzero(conf > conf_thres, as_tuple=True)
    delta = pred[0, a, y, x, :4]
    wh = anchors / stride  # anchor sizes in cells (JDE's anchor_vec)
    aw, ah = wh[a, 0], wh[a, 1]
    cx = aw * delta[:, 0] + x.float()  # JDE's decode_delta: anchor centre at the cell's corner
    cy = ah * delta[:, 1] + y.float()
    w = aw * torch.exp(delta[:, 2])
    h = ah * torch.exp(delta[:, 3])
    box = torch.stack([cx, cy, w, h], dim=1) * stride
    emb = maps[0, n_pred:, y, x].t().contiguous()  # (N, D)
    emb = F.normalize(emb, dim=-1)
    return torch.cat([box, conf[a, y, x].unsqueeze(1), torch.zeros_like(cx).unsqueeze(1), emb], dim=1)


def calibrate_random_batch_norm(net: JDENetwork, seed: int, size: tuple[int, int] = (160, 288)) -> None:
    """Random weights only: set every BN's running mean and variance to those of its input on one
    seeded uniform-noise image (`size`, a multiple of 32), layer after layer.

    With JDE's own random init (PyTorch's convolutions, BN scales in [0, 1), running statistics
    0 and 1) activations shrink layer after layer, and by the heads every cell predicts the same
    biases: one confidence everywhere, boxes of one size. Tests of the split would then compare
    constants. Normalising each BN's input keeps every layer's output varied, so a random JDE gives
    thousands of distinct boxes, scores and embeddings that depend on the image.
    """

    def set_stats(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        x = args[0]
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3), unbiased=False))

    generator = torch.Generator().manual_seed(int(seed))
    noise = torch.rand(1, 3, *size, generator=generator)
    hooks = [m.register_forward_pre_hook(set_stats) for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        net.compute(net.heads, {IMAGE: noise})
    finally:
        for hook in hooks:
            hook.remove()


def load_jde_weights(net: JDENetwork, path: Path, setting: str) -> None:
    """Load a JDE checkpoint (`{"model": state_dict, ...}` or a bare state dict) into `net`.

    Strict except for what inference never reads (`_TRAINING_ONLY`) and BN's `num_batches_tracked`
    (absent from checkpoints of older PyTorch): a missing or reshaped convolution is a different
    network, and running it half-initialised would give plausible-looking, wrong numbers.
    """
    if not path.is_file():
        raise CheckpointError(
            f"model.weights={setting}: no such file. Pass JDE's released checkpoint "
            f"(jde.1088x608.uncertainty.pt from Towards-Realtime-MOT's model zoo) as model.weights=/path/to/it, "
            f"or model.weights=none for random weights (seeded by model.seed)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(
            f"model.weights={setting}: not a PyTorch checkpoint ({type(exc).__name__}: {exc}); "
            f"JDE's checkpoints are torch.save'd dicts with the network under 'model'"
        ) from exc
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, Mapping):
        raise CheckpointError(f"model.weights={setting}: holds no state dict (expected a dict with 'model')")
    state = {k.removeprefix("module."): v for k, v in state.items() if not any(t in k for t in _TRAINING_ONLY)}
    own = net.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CheckpointError(
            f"model.weights={setting}: not a JDE yolov3 checkpoint: "
            f"{len(missing)} tensors missing (e.g. {missing[:3]}), {len(unexpected)} unknown (e.g. {unexpected[:3]})"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"model.weights={setting}: {key} has shape {tuple(value.shape)}, this network "
                f"{tuple(own[key].shape)}: the checkpoint is for another cfg"
            )
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=False)
