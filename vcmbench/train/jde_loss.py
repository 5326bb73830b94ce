"""JDE's training loss (Towards-Realtime-MOT `models.py` YOLOLayer, `utils/utils.py` build_targets_thres),
for `vcmbench train-jde`; written from the reference's description, not copied.

Per YOLO block (one scale, ``A`` anchors, an ``H x W`` grid of stride ``s``):

* **Anchor assignment**: every (anchor, cell) is a box centred on the cell's corner ``(x, y)`` (JDE's
  anchor mesh; its decoding adds the predicted offset to the corner) with the anchor's size, all in
  cells. Each target box (centre clamped into ``[0, W-1] x [0, H-1]``, as JDE clamps) is compared
  by IoU with all of them; an (anchor, cell) takes the target it overlaps most, and is foreground
  above ``fg_iou`` (0.5), background below ``bg_iou`` (0.4), ignored in between. One addition to
  JDE's rule (``best_anchor``, on by default): each target's best-overlapping (anchor, cell) is
  foreground whatever its IoU, as YOLOv3 and JDE's `build_targets_max` assign: the anchors sit on
  cell corners, so a 12-pixel object on the stride-8 grid can be half a cell from every anchor
  centre and overlap none above 0.5 (down to IoU 0.29), and would then never be learned.
* **Box regression**: smooth-L1 (mean) of the predicted ``(dx, dy, dw, dh)`` against JDE's
  encoding ``((gx - px) / pw, (gy - py) / ph, log(gw / pw), log(gh / ph))`` over the foreground.
* **Confidence**: two-way cross-entropy (background, object logits) over every non-ignored
  (anchor, cell), averaged (``conf_loss: jde``). JDE trains it for 30 epochs of half a million
  images; on the CI budget (a few thousand steps) the average, which the background's thousands of
  cells per image dominate, leaves objects under-confident (measured: 300 steps, 0.6% of the
  held-out objects above 0.5). Two options: ``balanced`` (the objects' mean plus the background's
  mean: 75% recall at 0.5, but a hundred false positives a frame at 300 steps) and ``focal``
  (RetinaNet's focal loss on the true class's softmax probability, alpha 0.25, gamma 2, summed
  and divided by the number of object anchors: 59% recall at 0.1, 0.6% at 0.5 at 300 steps). The
  threshold the trained network is tracked at is measured after training (`train.jde_eval`).
* **Identity**: the cells with a foreground anchor (the embedding belongs to the cell, shared by
  its anchors) take the largest identity among their anchors' targets (JDE's ``tids.max(1)``); the
  cell's embedding, L2-normalised and multiplied by ``sqrt(2) * log(nID - 1)`` (JDE's
  ``emb_scale``), goes through the identity classifier (a linear layer over every training
  identity, shared by the three scales); cross-entropy against the identity.
* **Uncertainty weighting** (Kendall et al., as JDE): ``0.5 * (exp(-s_r) L_box + exp(-s_c) L_conf +
  exp(-s_id) L_id + s_r + s_c + s_id)`` with learned ``s_*`` per scale, initialised as JDE's
  (-4.85, -4.15, -2.3). The total is the sum over the scales; it can be negative.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vcmbench.errors import ConfigError
from vcmbench.vision.jde_cfg import PRED_PER_ANCHOR

S_INIT = {"s_r": -4.85, "s_c": -4.15, "s_id": -2.3}  # JDE's YOLOLayer initial values
PARTS = ("box", "conf", "id")
CONF_LOSSES = ("jde", "balanced", "focal")
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0  # RetinaNet's


def box_iou_cxcywh(a: Tensor, b: Tensor) -> Tensor:
    """(N, 4) x (M, 4) centre-size boxes -> (N, M) IoU (JDE's bbox_iou with x1y1x2y2=False)."""
    a1, a2 = a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2
    b1, b2 = b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2
    lo = torch.maximum(a1[:, None], b1[None])
    hi = torch.minimum(a2[:, None], b2[None])
    inter = (hi - lo).clamp(min=0).prod(-1)
    union = a[:, 2:].prod(-1)[:, None] + b[:, 2:].prod(-1)[None] - inter
    return inter / (union + 1e-16)


def assign(
    targets: Tensor,
    anchors: Tensor,
    grid: tuple[int, int],
    fg_iou: float = 0.5,
    bg_iou: float = 0.4,
    best_anchor: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """One image's targets on one scale (module doc).

    `targets`: (N, 5) identity, cx, cy, w, h in cells; `anchors`: (A, 2) in cells. Returns
    ``tconf`` (A, H, W) int64 (1 object, 0 background, -1 ignored), ``tbox`` (A, H, W, 4) delta
    targets (zero off the foreground) and ``tid`` (A, H, W) int64 identities (-1 off the foreground).
    """
    gh, gw = grid
    n_a = anchors.shape[0]
    tconf = torch.zeros(n_a, gh, gw, dtype=torch.int64)
    tbox = torch.zeros(n_a, gh, gw, 4)
    tid = torch.full((n_a, gh, gw), -1, dtype=torch.int64)
    if len(targets) == 0:
        return tconf, tbox, tid
    gt = targets[:, 1:5].clone()
    gt[:, 0].clamp_(0, gw - 1)
    gt[:, 1].clamp_(0, gh - 1)
    ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    centres = torch.stack([xs, ys], -1).float().expand(n_a, gh, gw, 2)
    sizes = anchors[:, None, None, :].expand(n_a, gh, gw, 2)
    mesh = torch.cat([centres, sizes], -1).reshape(-1, 4)  # (A*H*W, 4), anchor-major as JDE's
    iou = box_iou_cxcywh(mesh, gt)
    best_iou, owner = iou.max(1)
    conf = torch.zeros_like(owner)
    conf[best_iou > fg_iou] = 1
    conf[(best_iou > bg_iou) & (best_iou < fg_iou)] = -1
    if best_anchor:
        where = iou.argmax(0)  # each target's best (anchor, cell); a later target wins a shared one
        conf[where] = 1
        owner[where] = torch.arange(len(gt))
    fg = conf == 1
    g, p = gt[owner[fg]], mesh[fg]
    delta = torch.stack(
        [
            (g[:, 0] - p[:, 0]) / p[:, 2],
            (g[:, 1] - p[:, 1]) / p[:, 3],
            torch.log(g[:, 2] / p[:, 2]),
            torch.log(g[:, 3] / p[:, 3]),
        ],
        1,
    )
    tconf.view(-1).copy_(conf)
    tbox.view(-1, 4)[fg] = delta
    tid.view(-1)[fg] = targets[owner[fg], 0].long()
    return tconf, tbox, tid


class JDELoss(nn.Module):
    """JDE's losses over the three scales (module doc); holds the training-only parameters: the
    identity classifier and each scale's ``s_r``, ``s_c``, ``s_id``."""

    def __init__(
        self,
        anchors: Sequence[Tensor],
        strides: Sequence[int],
        n_ids: int,
        embedding_dim: int,
        fg_iou: float = 0.5,
        bg_iou: float = 0.4,
        best_anchor: bool = True,
        conf_loss: str = "jde",
    ):
        super().__init__()
        if conf_loss not in CONF_LOSSES:
            raise ConfigError(f"loss.conf_loss={conf_loss!r}: choose one of {', '.join(CONF_LOSSES)}")
        self.conf_loss = conf_loss
        self.anchors = [a.float() / s for a, s in zip(anchors, strides)]  # in cells, per scale
        self.strides = [int(s) for s in strides]
        self.fg_iou, self.bg_iou, self.best_anchor = float(fg_iou), float(bg_iou), bool(best_anchor)
        self.n_ids = int(n_ids)
        self.emb_scale = math.sqrt(2) * math.log(self.n_ids - 1) if self.n_ids > 1 else 1.0
        self.classifier = nn.Linear(int(embedding_dim), self.n_ids)
        self.s = nn.ParameterList(
            nn.Parameter(torch.tensor([S_INIT[k] for k in ("s_r", "s_c", "s_id")])) for _ in strides
        )

    def forward(self, maps: Sequence[Tensor], targets: Sequence[Tensor]) -> tuple[Tensor, dict[str, float]]:
        """`maps`: each YOLO block's input (B, A*6 + D, H, W), in the order of `strides`; `targets`:
        per image (N, 5) identity, cx, cy, w, h in input pixels. Returns the total loss and the
        unweighted parts summed over the scales (box, conf, id) for the log."""
        total = maps[0].new_zeros(())
        parts = dict.fromkeys(PARTS, 0.0)
        for k, (m, anchors, stride) in enumerate(zip(maps, self.anchors, self.strides)):
            l_box, l_conf, l_id = self._scale(m, anchors, stride, targets)
            s_r, s_c, s_id = self.s[k]
            total = total + 0.5 * (
                torch.exp(-s_r) * l_box + torch.exp(-s_c) * l_conf + torch.exp(-s_id) * l_id + s_r + s_c + s_id
            )
            for name, value in zip(PARTS, (l_box, l_conf, l_id)):
                parts[name] += float(value.detach())
        return total, parts

    def _scale(self, maps: Tensor, anchors: Tensor, stride: int, targets: Sequence[Tensor]) -> tuple[Tensor, ...]:
        n_b, _, gh, gw = maps.shape
        n_a = anchors.shape[0]
        n_pred = n_a * PRED_PER_ANCHOR
        p = maps[:, :n_pred].view(n_b, n_a, PRED_PER_ANCHOR, gh, gw).permute(0, 1, 3, 4, 2)  # (B, A, H, W, 6)
        emb = maps[:, n_pred:].permute(0, 2, 3, 1)  # (B, H, W, D)
        assigned = []
        for t in targets:
            cells = t.clone().float()
            cells[:, 1:5] /= stride
            assigned.append(assign(cells, anchors, (gh, gw), self.fg_iou, self.bg_iou, self.best_anchor))
        tconf = torch.stack([a[0] for a in assigned])
        tbox = torch.stack([a[1] for a in assigned])
        tid = torch.stack([a[2] for a in assigned])
        fg = tconf == 1
        zero = maps.new_zeros(())
        l_box = F.smooth_l1_loss(p[..., :4][fg], tbox[fg]) if bool(fg.any()) else zero
        logits = p[..., 4:6].permute(0, 4, 1, 2, 3)
        l_conf = self._confidence(logits, tconf, fg)
        cell_fg = fg.any(1)  # (B, H, W)
        ids = tid.max(1).values[cell_fg]
        l_id = zero
        if len(ids) > 1:
            e = self.emb_scale * F.normalize(emb[cell_fg], dim=-1)
            l_id = F.cross_entropy(self.classifier(e), ids, ignore_index=-1)
        return l_box, l_conf, l_id

    def _confidence(self, logits: Tensor, tconf: Tensor, fg: Tensor) -> Tensor:
        """The (background, object) logits' loss against `tconf` (-1 ignored), as `conf_loss` says."""
        if self.conf_loss == "jde":
            return F.cross_entropy(logits, tconf, ignore_index=-1)
        each = F.cross_entropy(logits, tconf.clamp(min=0), reduction="none")
        bg = tconf == 0
        if self.conf_loss == "balanced":  # the objects' mean and the background's mean weigh the same
            zero = logits.new_zeros(())
            return (each[fg].mean() if bool(fg.any()) else zero) + (each[bg].mean() if bool(bg.any()) else zero)
        # focal (RetinaNet's, on the softmax probability of the true class): summed, per object
        p_true = torch.exp(-each)
        alpha = torch.where(fg, FOCAL_ALPHA, 1.0 - FOCAL_ALPHA)
        focal = alpha * (1.0 - p_true) ** FOCAL_GAMMA * each
        return focal[fg | bg].sum() / max(1, int(fg.sum()))
