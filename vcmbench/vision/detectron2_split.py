"""detectron2 R-CNN FPN models (Faster and Mask R-CNN, R50 and X101-32x8d; Panoptic FPN) cut after the FPN.

The front runs the DefaultPredictor preprocessing (ResizeShortestEdge, the config's channel
order, pixel normalization, padding to the FPN's size divisibility) and the backbone (ResNet
body + FPN), and keeps p2..p5. The back rebuilds p6 from p5 and runs the proposal generator,
ROI heads and detector_postprocess, exactly the calls GeneralizedRCNN.inference makes.
X101-32x8d-FPN is the MPEG-VCM feature anchor's network. For a PanopticFPN (the MPEG FCM CTTC's
semantic segmentation network on PandaSet, R101) the back also runs the semantic head on the
same features and sem_seg_postprocess, then the panoptic merge, all as PanopticFPN.inference does.

The panoptic merge is detectron2's `combine_semantic_and_instance_outputs` with the model's own
thresholds (cfg MODEL.PANOPTIC_FPN.COMBINE: overlap 0.5, stuff area 4096 pixels, instance score
0.5 by default: the values MPEG's platform passes, CompressAI-Vision's
`panoptic_rcnn_R_101_FPN_3x`): instances of score >= 0.5 pasted in score order, each dropped when
more than half of it is already taken, then the semantic head's stuff classes over what is left,
each kept where it covers at least 4096 pixels. Its (segment ids, segments) become one map of
category ids (`Detections.semantic`, `panoptic_categories`): a thing segment its COCO category id
(the `category_ids` of its class), a stuff segment its COCO panoptic id (92..200), 0 where no
segment is. That one map is what the platform scores (SEMANTICSEG-EVAL reads its panoptic result,
not the semantic head's argmax), and the PandaSet tables map its ids to PandaSet and VCM categories
(`vcmbench.datasets.pandaset_categories.vcm_of_coco`).

detectron2 is an optional extra (`bash scripts/install_detectron2.sh`): this module imports
it only inside `build` and the methods, so importing vcmbench never requires it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from vcmbench.errors import CheckpointError, ConfigError, MissingDependencyError, ShapeError
from vcmbench.paths import is_none
from vcmbench.types import LEVELS, Detections, Features, FrontOutput, ImageMeta, check_features, p6_from_p5
from vcmbench.vision.base import SplitDetector

if TYPE_CHECKING:  # detectron2 types only for annotations; it may not be installed
    from detectron2.config import CfgNode
    from detectron2.structures import Instances

INSTALL_HINT = "bash scripts/install_detectron2.sh"
CONFIGS = (
    "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml",
    "COCO-Detection/faster_rcnn_X_101_32x8d_FPN_3x.yaml",
    "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml",
)
"""Configs the exactness tests cover; any GeneralizedRCNN + FPN(LastLevelMaxPool) config should work
(`model=d2_mask_rcnn_x101_fpn` is X101's body, tested with Faster R-CNN, under R50's tested mask head)."""
PANOPTIC_CONFIG = "COCO-PanopticSegmentation/panoptic_fpn_R_101_3x.yaml"
"""The MPEG FCM CTTC's semantic segmentation network (PandaSet); tested on its own (tests/vision/test_panoptic_split.py)
because R101 with a semantic head is too slow for the parametrized detector tests above."""


def require_detectron2() -> None:
    """Fail with the install command rather than an ImportError deep inside Hydra instantiation."""
    try:
        import detectron2  # noqa: F401  # imported first: a cached submodule must not mask a hidden package
        import detectron2.modeling  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"detectron2 is not importable ({exc}). It is not on PyPI; install it (Python-only, "
            f"with the fixes it needs) with `{INSTALL_HINT}`, or choose a torchvision model "
            f"(model=frcnn_r50_fpn)"
        ) from exc


def load_config(
    config_name: str,
    score_thresh: float,
    detections_per_img: int,
    min_size: int,
    max_size: int,
    device: str,
    opts: Sequence[Any] | Mapping[str, Any] | None = None,
) -> CfgNode:
    """detectron2 config from the model zoo (or a local yaml), with vcmbench's test-time settings.

    `opts` are further detectron2 overrides, either its command-line style
    `[KEY, VALUE, ...]` or a mapping `{KEY: VALUE}`; they are applied last.
    """
    from detectron2 import model_zoo
    from detectron2.config import get_cfg

    if Path(config_name).is_file():
        path = config_name
    else:
        try:
            path = model_zoo.get_config_file(config_name)
        except RuntimeError as exc:
            raise ConfigError(
                f"model.config_name={config_name!r} is neither a local yaml file nor a detectron2 "
                f"model-zoo config (e.g. {CONFIGS[0]!r}); if it is a zoo name, re-run `{INSTALL_HINT}`"
            ) from exc
    cfg = get_cfg()
    cfg.merge_from_file(path)
    cfg.MODEL.WEIGHTS = ""  # weights are loaded by `build`, which reports failures in our terms
    cfg.MODEL.DEVICE = device
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = float(score_thresh)
    cfg.TEST.DETECTIONS_PER_IMAGE = int(detections_per_img)
    cfg.INPUT.MIN_SIZE_TEST = int(min_size)
    cfg.INPUT.MAX_SIZE_TEST = int(max_size)
    if opts:
        pairs = [x for kv in opts.items() for x in kv] if isinstance(opts, Mapping) else list(opts)
        try:
            cfg.merge_from_list(pairs)
        except (AssertionError, KeyError, ValueError) as exc:
            raise ConfigError(f"model.opts={pairs}: not valid detectron2 config overrides ({exc})") from exc
    cfg.freeze()
    return cfg


def load_weights(model: torch.nn.Module, config_name: str, weights: str) -> None:
    """Load `weights` ('model_zoo' or a local .pkl/.pth) with detectron2's DetectionCheckpointer.

    The checkpointer only logs keys it could not load; here a checkpoint that leaves part of
    the model at random init is an error, since its numbers would silently mean nothing.
    """
    from detectron2 import model_zoo
    from detectron2.checkpoint import DetectionCheckpointer

    class _Checkpointer(DetectionCheckpointer):
        incompatible: Any = None

        def _log_incompatible_keys(self, incompatible: Any) -> None:
            self.incompatible = incompatible
            super()._log_incompatible_keys(incompatible)

    checkpointer = _Checkpointer(model)
    if weights == "model_zoo":
        try:
            url = model_zoo.get_checkpoint_url(config_name)
        except RuntimeError as exc:
            raise CheckpointError(
                f"model.weights=model_zoo: detectron2's model zoo has no weights for {config_name!r}; "
                f"pass model.weights=/path/to/model.pkl"
            ) from exc
        try:
            checkpointer.load(url)
        except Exception as exc:  # download errors come in many types (URLError, socket, SSL, assert)
            raise CheckpointError(
                f"model.weights=model_zoo: could not download {url} ({type(exc).__name__}: {exc}). "
                f"Without network access, download that .pkl elsewhere and pass "
                f"model.weights=/path/to/{Path(url).name}"
            ) from exc
        source = url
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise CheckpointError(
                f"model.weights={weights}: no such file. Pass a local detectron2 checkpoint "
                f"(.pkl from the model zoo or a .pth), 'model_zoo' (downloads detectron2's weights) "
                f"or 'none' (random init)"
            )
        try:
            checkpointer.load(str(path))
        except Exception as exc:  # unpickling errors, wrong container format
            raise CheckpointError(
                f"model.weights={weights}: detectron2 could not read it ({type(exc).__name__}: {exc})"
            ) from exc
        source = str(path)
    incompatible = checkpointer.incompatible
    missing = list(getattr(incompatible, "missing_keys", []) or [])
    if missing:
        shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise CheckpointError(
            f"model.weights={weights}: {source} does not fit {config_name} ({len(missing)} parameters "
            f"missing or of the wrong shape: {shown}); pass the checkpoint trained with this config"
        )


def coco80_category_ids() -> list[int]:
    """detectron2's contiguous COCO labels 0..79 -> COCO category ids (sorted 1..90, with gaps)."""
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    ids = [c["id"] for c in COCO_CATEGORIES if c["isthing"] == 1]
    assert len(ids) == 80 and ids == sorted(ids)
    return ids


def coco_stuff_ids() -> list[int]:
    """COCO panoptic's 53 stuff category ids (92..200) in id order: stuff class k (1..53) of a
    COCO Panoptic FPN's semantic head is the k-th (its class 0 stands for all things)."""
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    ids = [c["id"] for c in COCO_CATEGORIES if c["isthing"] == 0]
    assert len(ids) == 53 and ids == sorted(ids)
    return ids


def panoptic_categories(
    panoptic_seg: Tensor, segments: list[dict], thing_ids: list[int] | None, stuff_ids: list[int]
) -> Tensor:
    """detectron2's panoptic result (segment ids per pixel, and each segment's `isthing` and class)
    -> an int64 map of category ids: a thing segment's class k is `thing_ids[k]` (k itself without
    them), a stuff segment's class k (1..53) `stuff_ids[k - 1]`, 0 where no segment is."""
    lut = torch.zeros(max([s["id"] for s in segments], default=0) + 1, dtype=torch.int64)
    for s in segments:
        k = int(s["category_id"])
        lut[int(s["id"])] = (thing_ids[k] if thing_ids is not None else k) if s["isthing"] else stuff_ids[k - 1]
    return lut[panoptic_seg.long().cpu()]


class Detectron2Split(SplitDetector):
    """Split wrapper around a detectron2 GeneralizedRCNN whose backbone is an FPN with LastLevelMaxPool.

    A PanopticFPN (a GeneralizedRCNN with a `sem_seg_head`) is split at the same place: its
    semantic head reads the same p2..p5, so one feature payload serves both outputs, which the
    back merges into its panoptic map (`Detections.semantic`, module docstring).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: CfgNode,
        name: str,
        category_ids: list[int] | None = None,
        stuff_ids: list[int] | None = None,
    ):
        from detectron2.data import transforms as T
        from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
        from detectron2.modeling.meta_arch.panoptic_fpn import PanopticFPN

        backbone = model.backbone
        if not isinstance(backbone, FPN) or not isinstance(backbone.top_block, LastLevelMaxPool):
            # p6 is rebuilt at the receiver by max-pool; another top block (RetinaNet's P6P7) would differ.
            raise ConfigError(
                f"model {name}: the split needs an FPN backbone whose top block is LastLevelMaxPool "
                f"(p6 = max-pool of p5); got {type(backbone).__name__}"
            )
        shapes = backbone.output_shape()
        if list(shapes) != [*LEVELS, "p6"]:
            raise ConfigError(f"model {name}: FPN outputs {list(shapes)}, expected {[*LEVELS, 'p6']}")
        self.model = model.eval()
        # Semantic output only for PanopticFPN: its inference is the one whose postprocessing we replay.
        self.semantic = isinstance(model, PanopticFPN)
        if self.semantic and (stuff_ids is None or len(stuff_ids) + 1 != cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES):
            raise ConfigError(
                f"model {name}: a Panoptic FPN's map names its stuff classes by COCO panoptic ids: it needs the "
                f"53 stuff ids of its {cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES}-class semantic head (COCO panoptic's, "
                "given by build with category_ids=coco80)"
            )
        self.stuff_ids = stuff_ids
        self.cfg = cfg
        self.name = name
        self.category_ids = category_ids
        self.out_channels = int(shapes["p2"].channels)
        self.device = torch.device(cfg.MODEL.DEVICE)
        self.input_format = cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ConfigError(f"model {name}: INPUT.FORMAT={self.input_format!r}; only RGB and BGR are supported")
        # The resize DefaultPredictor applies (PIL bilinear on the uint8 image).
        self.resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)

    def model_input(self, image: Tensor) -> dict[str, Any]:
        """uint8 RGB (3, H, W) -> the dict GeneralizedRCNN takes, as DefaultPredictor builds it.

        `front` and `full` both start here, so the split and the reference see the same pixels.
        """
        if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
            raise ShapeError(
                f"{self.name}: expected a uint8 RGB image of shape (3, H, W), got {image.dtype} {tuple(image.shape)}"
            )
        hwc = image.detach().cpu().permute(1, 2, 0).numpy()
        if self.input_format == "BGR":
            hwc = hwc[:, :, ::-1]
        hwc = np.ascontiguousarray(hwc)
        resized = self.resize.get_transform(hwc).apply_image(hwc)
        tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
        return {"image": tensor, "height": int(hwc.shape[0]), "width": int(hwc.shape[1])}

    @torch.inference_mode()
    def front(self, image: Tensor) -> FrontOutput:
        inputs = self.model_input(image)
        images = self.model.preprocess_image([inputs])
        out = self.model.backbone(images.tensor)
        feats = {lvl: out[lvl][0] for lvl in LEVELS}  # p6 is dropped: the back rebuilds it
        meta = ImageMeta(
            original_size=(inputs["height"], inputs["width"]),
            resized_size=tuple(int(v) for v in images.image_sizes[0]),
            padded_size=(int(images.tensor.shape[-2]), int(images.tensor.shape[-1])),
        )
        return FrontOutput(feats, meta)

    @torch.inference_mode()
    def back(self, features: Features, meta: ImageMeta) -> Detections:
        from detectron2.modeling.postprocessing import detector_postprocess, sem_seg_postprocess
        from detectron2.structures import ImageList

        check_features(features, self.out_channels)
        fpn = {lvl: features[lvl].unsqueeze(0).to(self.device, torch.float32) for lvl in LEVELS}
        fpn["p6"] = p6_from_p5(fpn["p5"])
        # RPN and ROI heads read only image_sizes (clipping) from the ImageList at inference;
        # a zero-stride view of the padded size stands in for pixels the receiver never sees.
        h, w = meta.padded_size
        placeholder = torch.zeros((), dtype=torch.float32, device=self.device).expand(1, 3, h, w)
        resized = tuple(int(v) for v in meta.resized_size)
        images = ImageList(placeholder, [resized])
        height, width = (int(v) for v in meta.original_size)
        logits = None
        if self.semantic:  # first, as PanopticFPN.inference orders it
            logits, _ = self.model.sem_seg_head(fpn, None)
        proposals, _ = self.model.proposal_generator(images, fpn, None)
        results, _ = self.model.roi_heads(images, fpn, proposals, None)
        instances = detector_postprocess(results[0], height, width)
        if logits is None:
            return _to_detections(instances)
        from detectron2.modeling.meta_arch.panoptic_fpn import combine_semantic_and_instance_outputs

        m = self.model
        panoptic = combine_semantic_and_instance_outputs(
            instances,
            sem_seg_postprocess(logits[0], resized, height, width).argmax(dim=0),
            m.combine_overlap_thresh,
            m.combine_stuff_area_thresh,
            m.combine_instances_score_thresh,
        )
        return _to_detections(instances, self._categories(panoptic))

    @torch.inference_mode()
    def full(self, image: Tensor) -> Detections:
        out = self.model([self.model_input(image)])[0]
        panoptic = out.get("panoptic_seg")
        return _to_detections(out["instances"], self._categories(panoptic) if panoptic is not None else None)

    def _categories(self, panoptic: tuple[Tensor, list[dict]]) -> Tensor:
        assert self.stuff_ids is not None  # __init__ checks it for a PanopticFPN
        return panoptic_categories(panoptic[0], panoptic[1], self.category_ids, self.stuff_ids)


def _to_detections(inst: Instances, semantic: Tensor | None = None) -> Detections:
    """Boxes, scores and labels on the CPU, and Mask R-CNN's masks (pasted into the original image
    by detector_postprocess, thresholded at 0.5) when the model segments. `semantic`: a PanopticFPN's
    panoptic map as category ids (`panoptic_categories`)."""
    return Detections(
        boxes=inst.pred_boxes.tensor.detach().float().cpu(),
        scores=inst.scores.detach().float().cpu(),
        labels=inst.pred_classes.detach().long().cpu(),
        masks=inst.pred_masks.detach().bool().cpu() if inst.has("pred_masks") else None,
        semantic=semantic,
    )


def build(
    config_name: str = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml",
    weights: str | None = "none",
    name: str | None = None,
    seed: int = 0,
    score_thresh: float = 0.05,
    detections_per_img: int = 100,
    min_size: int = 800,
    max_size: int = 1333,
    device: str = "cpu",
    category_ids: list[int] | str | None = "coco80",
    opts: Sequence[Any] | Mapping[str, Any] | None = None,
    split: str = "fpn",
) -> Detectron2Split:
    """Hydra target: `model=d2_frcnn_r50_fpn` / `d2_frcnn_x101_fpn` / `d2_mask_rcnn_r50_fpn` /
    `d2_panoptic_fpn_r101` (the PanopticFPN adds its panoptic map, `Detections.semantic`).

    `weights`: 'none' (random init, fixed by `seed`), 'model_zoo' (detectron2's download),
    or a local checkpoint path. `category_ids`: 'coco80' maps detectron2's 80 contiguous COCO
    labels to COCO category ids; a list gives the mapping; None means labels are the ids.
    `opts`: further detectron2 config overrides ({KEY: VALUE} or [KEY, VALUE, ...]), applied last.
    `split`: fpn only (detectron2's FPN runs its bottom-up body inside one forward, so a cut before
    it would re-implement that forward; the torchvision models and ci_frcnn take split=backbone).
    """
    if split != "fpn":
        raise ConfigError(
            f"model.split={split!r}: detectron2 models split after the FPN only (split=fpn); "
            "split=backbone works with the torchvision models (frcnn_r50_fpn, maskrcnn_r50_fpn, ...) "
            "and ci_frcnn / ci_maskrcnn"
        )
    require_detectron2()
    from detectron2.modeling import build_model

    cfg = load_config(config_name, score_thresh, detections_per_img, min_size, max_size, device, opts)
    torch.manual_seed(seed)  # before build_model: random init draws from the global generator
    try:
        model = build_model(cfg)
    except (RuntimeError, AssertionError) as exc:  # e.g. MODEL.DEVICE=cuda without a GPU
        raise ConfigError(f"model.config_name={config_name}, model.device={device}: cannot build ({exc})") from exc
    weights = "none" if is_none(weights) else str(weights)
    if weights != "none":
        load_weights(model, config_name, weights)
    if category_ids == "coco80":
        num_classes = int(cfg.MODEL.ROI_HEADS.NUM_CLASSES)
        if num_classes != 80:
            raise ConfigError(
                f"model.category_ids=coco80 needs an 80-class COCO model; {config_name} has {num_classes} "
                f"classes: pass model.category_ids as a list or null"
            )
        cats: list[int] | None = coco80_category_ids()
    elif isinstance(category_ids, str):
        raise ConfigError(f"model.category_ids={category_ids!r}: use 'coco80', a list of ids, or null")
    else:
        cats = list(category_ids) if category_ids else None
    # a COCO Panoptic FPN (80 things, 53 stuff): its map's stuff ids are COCO panoptic's
    coco_panoptic = category_ids == "coco80" and int(cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES) == 54
    return Detectron2Split(
        model, cfg, name or Path(config_name).stem, cats, coco_stuff_ids() if coco_panoptic else None
    )
