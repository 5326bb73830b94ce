"""The learned codecs' checkpoint files: what a rate point's network is, stored so it decodes the same everywhere.

A checkpoint holds the network's settings, its weights and the CDF tables the entropy coder reads,
and a sha256 fingerprint of all of it: a payload names the first 4 bytes of it (`codec`), so a
decoder never decodes with another model than the encoder's.

Determinism: weights are stored at 7-bit precision per output channel (a fine-tuned rate point as
its change from the checkpoint it was fine-tuned from, its parent) and the CDF tables computed
from exactly the weights those codes give (``update(force=True)`` after quantizing) are stored
in the checkpoint and loaded as they are, never recomputed. Format 1 checkpoints (float16
weights, no parent) are still read.

Kept apart from the codec adapter (`codec`) and the payload coding (`entropy`): training
(`vcmbench.train.codec`) writes these files, the codec only reads them.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from vcmbench.atomic import torch_save
from vcmbench.codecs.hybrid.network import ARCH as HYBRID_ARCH
from vcmbench.codecs.hybrid.network import build_hybrid_net
from vcmbench.codecs.learned.models import FeatureCompressionNet, build_net
from vcmbench.errors import CheckpointError, ConfigError

FORMAT = "vcmbench-learned-feature-codec/2"  # integer-coded weights per output channel, optionally a parent's change
FORMAT_V1 = "vcmbench-learned-feature-codec/1"  # float16 weights: still read
_TABLES = ("_quantized_cdf", "_offset", "_cdf_length")
#: Stored weight precision: the largest weight of each output channel is WEIGHT_LEVELS steps. 63
#: (7 bits) keeps twelve 6.5 M-parameter rate points within 40 MB; measured on learned_interleaved
#: q6, against the float16 weights it was trained to: +1.4 % P2 MSE, +0.3 % bits (127: +0.4 %, +0.1 %)
WEIGHT_LEVELS = 63


def _is_half_stored(key: str, tensor: torch.Tensor) -> bool:
    """Transform weights are quantized for storage (`_quantize`); entropy-model
    parameters and buffers stay as they are."""
    return (
        tensor.is_floating_point()
        and not key.startswith(("entropy_bottleneck.", "gaussian_conditional."))
        and not key.startswith(("feat_scale", "feat_absmax"))
    )


def _fingerprint(arch: str, net_kwargs: dict, state: dict[str, torch.Tensor], parent: dict | None) -> str:
    """sha256 of what decodes: the format, network settings, the parent it was made from, every
    tensor as it codes."""
    h = hashlib.sha256(f"{FORMAT}|{arch}|{json.dumps(net_kwargs, sort_keys=True)}|{json.dumps(parent)}".encode())
    return _hash_state(h, state)


def _hash_state(h, state: dict[str, torch.Tensor]) -> str:
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"|{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def _quantize(delta: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q = round(delta / step) per output channel (dim 0), step = max|weights| / WEIGHT_LEVELS: one
    precision whether `delta` is the weights themselves or their change from a parent's (a
    fine-tune's small change then takes small codes, which lzma packs into a few bits each).
    int8 codes when they fit, else int16."""
    rows = delta.shape[0] if delta.dim() else 1
    step = weights.float().reshape(rows, -1).abs().amax(dim=1) / WEIGHT_LEVELS
    q = torch.round(delta.float().reshape(rows, -1) / step.clamp_min(1e-30)[:, None])
    dtype = torch.int8 if q.numel() == 0 or float(q.abs().max()) <= 127 else torch.int16
    return q.clamp_(-32767, 32767).to(dtype).reshape(delta.shape), step


def _dequantize(reference: torch.Tensor, q: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """reference + q * step, in float32: the same operations at save and at load, so the same bits."""
    flat = q.reshape(q.shape[0] if q.dim() else 1, -1).float() * step[:, None]
    return reference.float() + flat.reshape(q.shape)


def _fingerprint_v1(arch: str, net_kwargs: dict, state: dict[str, torch.Tensor]) -> str:
    """Format 1's fingerprint (float16 weights as stored; no parent)."""
    h = hashlib.sha256(f"{FORMAT_V1}|{arch}|{json.dumps(net_kwargs, sort_keys=True)}".encode())
    return _hash_state(h, state)


def finalize(
    net: FeatureCompressionNet, reference: dict[str, torch.Tensor] | None = None
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, torch.Tensor]]:
    """Quantize the transform weights, then compute the CDF tables from exactly those.

    Each transform weight tensor is stored at WEIGHT_LEVELS precision per output channel (`_quantize`): as
    itself, or as its change from `reference` (the weights of the checkpoint it was fine-tuned from,
    which it then names as its parent: a fine-tune moves the weights little, so its codes are small). Returns
    (the integer codes and steps, the state dict as it codes: float32 weights and fresh tables);
    `net` is left with exactly those weights and tables, ready to code.
    """
    state = net.state_dict()
    codes, effective = {}, {}
    for k, v in state.items():
        if _is_half_stored(k, v):
            ref = reference[k].float() if reference is not None else torch.zeros(v.shape)
            codes[k] = _quantize(v.float() - ref, v)
            effective[k] = _dequantize(ref, *codes[k])
        else:
            effective[k] = v
    net.load_state_dict(effective)
    # update_quantiles: fit the entropy bottleneck's coding range to its learned density
    # directly (a short run's aux loss has not converged, and a too-narrow range sends
    # symbols to the costly bypass mode)
    net.update(force=True, update_quantiles=True)
    return codes, {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


def save_checkpoint(
    net: FeatureCompressionNet,
    path: str | Path,
    arch: str,
    net_kwargs: dict,
    meta: dict,
    parent: str | Path | None = None,
) -> dict:
    """Finalize `net` and write it; returns meta + model_id + checkpoint_bytes.

    `parent`: the checkpoint (in the same folder) `net` was fine-tuned from; the file then stores
    the weights' change from it and names it (file and fingerprint), and loading it loads the
    parent first. The integer codes are lzma-compressed, the integer CDF tables zlib-compressed (the
    Gaussian table is ~0.8 MB raw, mostly padding).
    """
    path = Path(path)
    reference, parent_info = None, None
    if parent is not None:
        parent = Path(parent)
        if parent.resolve().parent != path.resolve().parent:
            raise ConfigError(f"{path}: its parent {parent} must lie in the same folder (it is named by file name)")
        pnet, pmeta = load_checkpoint(parent)
        reference, parent_info = pnet.state_dict(), {"file": parent.name, "fingerprint": pmeta["fingerprint"]}
    codes, effective = finalize(net, reference)
    fp = _fingerprint(arch, net_kwargs, effective, parent_info)
    tensors = {k: v for k, v in effective.items() if k not in codes and not k.endswith(_TABLES)}
    tables = {}
    for k, v in effective.items():
        if k.endswith(_TABLES):
            arr = v.to(torch.int32).numpy()
            tables[k] = {"shape": list(arr.shape), "data": zlib.compress(arr.astype("<i4").tobytes(), 9)}
    # (a uint8 tensor, not bytes: torch.save pickles bytes as latin-1 text, half again as large)
    quantized = {
        k: {
            "shape": list(q.shape),
            "step": step,
            "dtype": str(q.dtype).removeprefix("torch."),
            "data": torch.frombuffer(bytearray(lzma.compress(q.numpy().tobytes(), preset=6)), dtype=torch.uint8),
        }
        for k, (q, step) in codes.items()
    }
    meta = dict(meta)
    meta.update(
        {
            "format": FORMAT,
            "arch": arch,
            "net": net_kwargs,
            "model_id": fp[:8],
            "fingerprint": fp,
            "parent": parent_info,
        }
    )
    blob = {
        "format": FORMAT,
        "arch": arch,
        "net": json.dumps(net_kwargs, sort_keys=True),
        "meta": json.dumps(meta, sort_keys=True),
        "state": tensors,
        "tables": tables,
        "quantized": quantized,
        "parent": json.dumps(parent_info),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch_save(blob, path)
    meta["checkpoint_bytes"] = path.stat().st_size
    return meta


def load_checkpoint(path: str | Path) -> tuple[FeatureCompressionNet, dict]:
    """(net in eval mode with its stored CDF tables, meta). Checks the fingerprint; a fine-tune's
    parent is read first (and must be the one it was made from)."""
    path = Path(path)
    arch, net_kwargs, meta, stored = _checked_state(path)
    net = _build(arch, net_kwargs)
    try:
        net.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in stored.items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the {arch} network it describes: {exc}") from exc
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, dict(meta)  # a copy: the checked state is cached (_checked_state)


def _build(arch: str, net_kwargs: dict) -> torch.nn.Module:
    """The network a checkpoint describes: a learned codec's, or the hybrid codec's reduction and
    restoration pair (stored in this same format: 7-bit weights, fingerprint, parents)."""
    if arch == HYBRID_ARCH:
        return build_hybrid_net(**net_kwargs)
    return build_net(arch, **net_kwargs)


def _checked_state(path: Path, depth: int = 0) -> tuple[str, dict, dict, dict[str, torch.Tensor]]:
    """(arch, net settings, meta, the state dict as it codes) of a checkpoint file, its parent chain
    rebuilt and every fingerprint checked. The files' parsed contents are cached by (path, size,
    mtime), so the rate points of one chain decompress each parent once; so is the checked state,
    while the file and the parent state it was rebuilt on are those of the check (a changed
    parent is a new state object, so its children are checked again): a worker that loads the
    four rate points of a chain checks each file once, not the chain's head four times.
    The returned tensors are shared: callers copy them (load_state_dict does)."""
    st = path.stat() if path.is_file() else None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns) if st else (str(path), -1, -1)
    fmt, arch, net_kwargs, meta, base, codes, parent_info = _read_blob(*key)
    reference = _parent_state(path, parent_info, depth) if parent_info is not None else None
    hit = _CHECKED.get(key)
    if hit is not None and hit[0] is reference:
        return hit[1]
    stored = dict(base)
    for k, (q, step) in codes.items():
        stored[k] = _dequantize(reference[k] if reference is not None else torch.zeros(q.shape), q, step)
    fp = (
        _fingerprint(arch, net_kwargs, stored, parent_info)
        if fmt == FORMAT
        else _fingerprint_v1(arch, net_kwargs, stored)
    )
    if fp != meta.get("fingerprint"):
        raise CheckpointError(f"{path}: fingerprint mismatch (the file is corrupt or was edited); recreate it")
    if len(_CHECKED) >= 32:
        _CHECKED.pop(next(iter(_CHECKED)))
    _CHECKED[key] = (reference, (arch, net_kwargs, meta, stored))
    return arch, net_kwargs, meta, stored


#: (path, size, mtime) -> (the parent state it was rebuilt on, its checked state): _checked_state
_CHECKED: dict[tuple, tuple] = {}


@lru_cache(maxsize=16)
def _read_blob(path_str: str, _size: int, _mtime_ns: int) -> tuple:
    path = Path(path_str)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") not in (FORMAT, FORMAT_V1):
            raise ValueError(f"not a {FORMAT} file")
        arch = str(blob["arch"])
        net_kwargs = json.loads(blob["net"])
        meta = json.loads(blob["meta"])
        base = dict(blob["state"])
        for k, t in blob["tables"].items():
            arr = np.frombuffer(zlib.decompress(t["data"]), dtype="<i4").reshape(t["shape"])
            base[k] = torch.from_numpy(arr.astype(np.int32))
        parent_info = json.loads(blob.get("parent", "null"))
        codes = {k: _codes(t) for k, t in blob.get("quantized", {}).items()}
    except Exception as exc:  # zip, pickle, zlib, lzma, key errors: all mean "not a usable checkpoint"
        raise CheckpointError(
            f"{path}: cannot read the learned-codec checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    return blob["format"], arch, net_kwargs, meta, base, codes, parent_info


def _codes(entry: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """One stored tensor's integer codes and per-channel steps (its lzma data as a uint8 tensor, or
    as bytes in the first files of this format)."""
    data = entry["data"]
    raw = lzma.decompress(data.numpy().tobytes() if isinstance(data, torch.Tensor) else bytes(data))
    dtype = {"int8": np.int8, "int16": np.int16}[entry.get("dtype", "int8")]
    return torch.from_numpy(np.frombuffer(raw, dtype=dtype).reshape(entry["shape"]).copy()), entry["step"]


def _parent_state(path: Path, parent_info: dict, depth: int) -> dict[str, torch.Tensor]:
    parent = path.parent / str(parent_info["file"])
    if depth > 32:
        raise CheckpointError(f"{path}: its chain of parent checkpoints does not end (a loop?)")
    if not parent.is_file():
        raise CheckpointError(
            f"{path}: stores its weights as a change of {parent.name}, which is missing from "
            f"{path.parent}; put it back beside it"
        )
    _, _, pmeta, pstate = _checked_state(parent, depth + 1)
    if pmeta.get("fingerprint") != parent_info.get("fingerprint"):
        raise CheckpointError(
            f"{path}: was made from model {str(parent_info.get('fingerprint'))[:8]} of "
            f"{parent.name}, but that file is now model {pmeta.get('model_id')}; restore the "
            f"{parent.name} it was made from"
        )
    return pstate
