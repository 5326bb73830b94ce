"""Learned multi-scale feature codecs as vcmbench codecs: one trained checkpoint per rate point.

`codec=learned_interleaved` (Kim et al. 2024, interleaved fusion and encoding) and
`codec=learned_cascade` (fuse all levels first, then compress: the ablation baseline). The
knob is `quality` (1 = lowest rate); quality k loads ``<checkpoint_dir>/q{k}.pt`` (its
``q{k}.json`` says how it was trained; `vcmbench train codec=<name> quality=k` makes it).

Payload (after the 30-byte container header of `vcmbench.codecs.base`):

    model id   4 bytes   first 4 bytes of the checkpoint's sha256 fingerprint; the decoder
                         refuses a payload made by another model (retrained, other arch)
    quality    u8        which checkpoint decodes it
    stream     the rest  ONE rANS stream (CompressAI's entropy coder) holding z (entropy
                         bottleneck) then y (Gaussian conditional, mean/scale from z)

Latent shapes are not written: they follow from the container's shape table (P2 padded up
to a multiple of the model's total stride, the same rule at both ends). Coding z and y in
one stream saves the 8-byte rANS flush and a length field per image (about 9 bytes: at
~0.005 bpp on a 256x256 image that is a third of the payload).

Integrity without a checksum: rANS coding is a deterministic function of the symbols and
their CDF indexes, so the decoder re-encodes what it decoded and compares the result with
the received stream; any difference (a flipped or missing byte) is a PayloadError. The
decoder also reads from a zero-padded copy of the stream, so a corrupt stream cannot make
the C++ decoder read outside memory it owns, and decoded features are clamped to the
range seen in training, so they are always finite.

Determinism: weights are stored at 7-bit precision per output channel (a fine-tuned rate point as
its change from the checkpoint it was fine-tuned from, its parent) and the CDF tables computed
from exactly the weights those codes give (``update(force=True)`` after quantizing) are stored
in the checkpoint and loaded as they are, never recomputed; the hyper-decoder that picks each
symbol's CDF runs in float64. Format 1 checkpoints (float16 weights, no parent) are still read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import math
import struct
import warnings
import zlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from vcmbench.atomic import torch_save
from vcmbench.codecs.base import FeatureCodec, RatePoint, register_tags
from vcmbench.codecs.learned.models import CONTEXT_KERNEL, FeatureCompressionNet, build_net, pad_levels
from vcmbench.codecs.tiling import Reader
from vcmbench.errors import CheckpointError, ConfigError, PayloadError, ShapeError
from vcmbench.paths import display_path, resolve_data_path
from vcmbench.types import LEVELS, Features

#: arch -> payload tag
TAGS = {"interleaved": b"LMSI", "cascade": b"LMSC"}
register_tags(f"{__name__}.LearnedCodec", *TAGS.values())

FORMAT = "vcmbench-learned-feature-codec/2"  # integer-coded weights per output channel, optionally a parent's change
FORMAT_V1 = "vcmbench-learned-feature-codec/1"  # float16 weights: still read
MAX_P2_CELLS = 512 * 512  # decode bound: P2 grid of a 2048 x 2048 input (stride 4)
_TABLES = ("_quantized_cdf", "_offset", "_cdf_length")
#: Symbols are clamped to +-SYMBOL_LIMIT before coding. CompressAI's rANS encoder loops forever
#: on bypass values of 2**28 and more (an int32 shift by 32), so the decoder also refuses any
#: decoded symbol beyond the limit before it re-encodes (a corrupt stream can decode to anything).
SYMBOL_LIMIT = 1 << 20
#: Stored weight precision: the largest weight of each output channel is WEIGHT_LEVELS steps. 63
#: (7 bits) keeps twelve 6.5 M-parameter rate points within 40 MB; measured on learned_interleaved
#: q6, against the float16 weights it was trained to: +1.4 % P2 MSE, +0.3 % bits (127: +0.4 %, +0.1 %)
WEIGHT_LEVELS = 63


# ----------------------------------------------------------------------------- checkpoints


def _is_half_stored(key: str, tensor: torch.Tensor) -> bool:
    """Transform weights are quantized for storage (`_quantize`); entropy-model
    parameters and buffers stay as they are."""
    return tensor.is_floating_point() and not key.startswith(("entropy_bottleneck.", "gaussian_conditional.")) \
        and not key.startswith(("feat_scale", "feat_absmax"))


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


def finalize(net: FeatureCompressionNet, reference: dict[str, torch.Tensor] | None = None
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


def save_checkpoint(net: FeatureCompressionNet, path: str | Path, arch: str, net_kwargs: dict, meta: dict,
                    parent: str | Path | None = None) -> dict:
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
    quantized = {k: {"shape": list(q.shape), "step": step, "dtype": str(q.dtype).removeprefix("torch."),
                     "data": torch.frombuffer(bytearray(lzma.compress(q.numpy().tobytes(), preset=6)), dtype=torch.uint8)}
                 for k, (q, step) in codes.items()}
    meta = dict(meta)
    meta.update({"format": FORMAT, "arch": arch, "net": net_kwargs, "model_id": fp[:8], "fingerprint": fp,
                 "parent": parent_info})
    blob = {"format": FORMAT, "arch": arch, "net": json.dumps(net_kwargs, sort_keys=True),
            "meta": json.dumps(meta, sort_keys=True), "state": tensors, "tables": tables, "quantized": quantized,
            "parent": json.dumps(parent_info)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch_save(blob, path)
    meta["checkpoint_bytes"] = path.stat().st_size
    return meta


def load_checkpoint(path: str | Path) -> tuple[FeatureCompressionNet, dict]:
    """(net in eval mode with its stored CDF tables, meta). Checks the fingerprint; a fine-tune's
    parent is read first (and must be the one it was made from)."""
    path = Path(path)
    arch, net_kwargs, meta, stored = _checked_state(path)
    net = build_net(arch, **net_kwargs)
    try:
        net.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in stored.items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the {arch} network it describes: {exc}") from exc
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, meta


def _checked_state(path: Path, depth: int = 0) -> tuple[str, dict, dict, dict[str, torch.Tensor]]:
    """(arch, net settings, meta, the state dict as it codes) of a checkpoint file, its parent chain
    rebuilt and every fingerprint checked. The files' parsed contents are cached by (path, size,
    mtime), so the rate points of one chain decompress each parent once; the checks run every time."""
    st = path.stat() if path.is_file() else None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns) if st else (str(path), -1, -1)
    fmt, arch, net_kwargs, meta, base, codes, parent_info = _read_blob(*key)
    stored = dict(base)
    reference = _parent_state(path, parent_info, depth) if parent_info is not None else None
    for k, (q, step) in codes.items():
        stored[k] = _dequantize(reference[k] if reference is not None else torch.zeros(q.shape), q, step)
    fp = _fingerprint(arch, net_kwargs, stored, parent_info) if fmt == FORMAT else \
        _fingerprint_v1(arch, net_kwargs, stored)
    if fp != meta.get("fingerprint"):
        raise CheckpointError(f"{path}: fingerprint mismatch (the file is corrupt or was edited); recreate it")
    return arch, net_kwargs, meta, stored


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
        raise CheckpointError(f"{path}: cannot read the learned-codec checkpoint ({type(exc).__name__}: {exc})") from exc
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
        raise CheckpointError(f"{path}: stores its weights as a change of {parent.name}, which is missing from "
                              f"{path.parent}; put it back beside it")
    _, _, pmeta, pstate = _checked_state(parent, depth + 1)
    if pmeta.get("fingerprint") != parent_info.get("fingerprint"):
        raise CheckpointError(f"{path}: was made from model {str(parent_info.get('fingerprint'))[:8]} of "
                              f"{parent.name}, but that file is now model {pmeta.get('model_id')}; restore the "
                              f"{parent.name} it was made from")
    return pstate


# ----------------------------------------------------------------------------- coding


def _coder_tables(module) -> tuple[list, list, list]:
    """The rANS coder's (cdfs, cdf lengths, offsets) as Python lists, each CDF cut to its own length.

    CompressAI stores the CDFs as one tensor padded to the longest (64 x 3133 entries for the
    Gaussian conditional's scale table, of which 27 k are used); the coder reads only the first
    `length` entries of a row, so the cut rows code the same bytes, and pybind converts 7x fewer
    numbers on every call (2 ms per image; with the context model, per latent position)."""
    lengths = module._cdf_length.reshape(-1).int().tolist()
    cdfs = [row[:n] for row, n in zip(module._quantized_cdf.tolist(), lengths)]
    return cdfs, lengths, module._offset.reshape(-1).int().tolist()


def _z_indexes(net: FeatureCompressionNet, z_shape: tuple[int, int]) -> torch.Tensor:
    c = net.entropy_bottleneck.channels
    return torch.arange(c, dtype=torch.int32).view(1, c, 1, 1).expand(1, c, *z_shape)


def _z_medians(net: FeatureCompressionNet) -> torch.Tensor:
    return net.entropy_bottleneck.quantiles[:, 0, 1].detach().view(1, -1, 1, 1)


class _Cache:
    """Per-net Python lists of the CDF tables (converting them per image costs more than coding)."""

    def __init__(self, net: FeatureCompressionNet):
        self.z = _coder_tables(net.entropy_bottleneck)
        self.y = _coder_tables(net.gaussian_conditional)


def _scale_indexes(net: FeatureCompressionNet, scales: torch.Tensor) -> torch.Tensor:
    """The CDF index of each scale, exactly as `GaussianConditional.build_indexes` picks it (the
    number of scale-table entries below it, the last excluded), in one sorted search instead of
    one pass over the tensor per table entry (64 passes: a third of the encode time at P3's grid)."""
    table = net.gaussian_conditional.scale_table[:-1].to(scales.dtype)
    return torch.bucketize(scales.contiguous(), table, out_int32=True)


def _channels_last(levels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """oneDNN's convolutions run 2-3x faster on CPU in channels-last layout (same arithmetic up to
    summation order); the codec's networks are converted once (`LearnedCodec.net`)."""
    return [t.contiguous(memory_format=torch.channels_last) for t in levels]


def _tables(net: FeatureCompressionNet) -> _Cache:
    cache = net.__dict__.get("_coder_cache")
    if cache is None:
        cache = _Cache(net)
        net.__dict__["_coder_cache"] = cache
    return cache


@torch.inference_mode()
def encode_levels(net: FeatureCompressionNet, levels: Sequence[torch.Tensor]) -> bytes:
    """[p2..p5] (each (C,H,W) or (1,C,H,W)) -> one rANS stream holding z then y."""
    from compressai.ans import BufferedRansEncoder

    x = [(t if t.dim() == 4 else t.unsqueeze(0)).to(torch.float32) for t in levels]
    x, _ = pad_levels(x, net.total_stride)
    y = net.g_a(x).contiguous()  # g_a's scaling writes the levels channels-last
    z = net.h_a(y)
    med = _z_medians(net)
    z_sym = torch.round(z - med).clamp_(-SYMBOL_LIMIT, SYMBOL_LIMIT)
    z_hat = z_sym + med
    scales, means = net.hyper_params_exact(z_hat)
    if net.context:
        y_symbols, y_indexes = _context_encode(net, y, torch.cat([scales, means], dim=1))
    else:
        y_idx = _scale_indexes(net, scales)
        y_sym = torch.round(y - means).clamp_(-SYMBOL_LIMIT, SYMBOL_LIMIT)
        y_symbols, y_indexes = y_sym.int().reshape(-1).tolist(), y_idx.reshape(-1).tolist()
    tabs = _tables(net)
    enc = BufferedRansEncoder()
    enc.encode_with_indexes(z_sym.int().reshape(-1).tolist(), _z_indexes(net, z.shape[-2:]).reshape(-1).tolist(), *tabs.z)
    enc.encode_with_indexes(y_symbols, y_indexes, *tabs.y)
    return enc.flush()


def _context_code(net: FeatureCompressionNet, hyper: torch.Tensor, y_shape: tuple[int, int],
                  symbols_at) -> tuple[torch.Tensor, list[int], list[int]]:
    """y's positions in raster order, each with its scales and means from the latents decoded
    before it: `symbols_at(h, w, means, indexes)` gives that position's M symbols (the encoder
    rounds y, the decoder reads the stream). Returns y_hat, all symbols and all CDF indexes, in
    the serial order both ends share."""
    pad = CONTEXT_KERNEL // 2
    hh, ww = y_shape
    y_hat = torch.zeros(1, net.M, hh + 2 * pad, ww + 2 * pad, dtype=torch.float64)
    symbols: list[int] = []
    indexes: list[int] = []
    for h in range(hh):
        for w in range(ww):
            scales, means = net.context_params_exact(y_hat, hyper, h, w)
            idx = _scale_indexes(net, scales).reshape(-1).tolist()
            sym = symbols_at(h, w, means, idx)
            y_hat[:, :, h + pad:h + pad + 1, w + pad:w + pad + 1] = \
                torch.tensor(sym, dtype=torch.float64).view(1, net.M, 1, 1) + means
            symbols += sym
            indexes += idx
    return y_hat[:, :, pad:pad + hh, pad:pad + ww].float(), symbols, indexes


def _context_encode(net: FeatureCompressionNet, y: torch.Tensor, hyper: torch.Tensor) -> tuple[list[int], list[int]]:
    """y's symbols and CDF indexes in the serial order the decoder needs."""
    y64 = y.double()

    def rounded(h: int, w: int, means: torch.Tensor, _idx: list[int]) -> list[int]:
        sym = torch.round(y64[:, :, h:h + 1, w:w + 1] - means).clamp_(-SYMBOL_LIMIT, SYMBOL_LIMIT)
        return sym.int().reshape(-1).tolist()

    _, symbols, indexes = _context_code(net, hyper, tuple(y.shape[-2:]), rounded)
    return symbols, indexes


def _context_decode(net: FeatureCompressionNet, dec, tabs: _Cache, hyper: torch.Tensor, y_shape: tuple[int, int],
                    who: str) -> tuple[torch.Tensor, list[int], list[int]]:
    """Inverse of `_context_encode`: y's symbols read from `dec` one position at a time (serial:
    each position's CDFs need the latents before it). Returns y_hat and the symbols and indexes."""

    def read(_h: int, _w: int, _means: torch.Tensor, idx: list[int]) -> list[int]:
        sym = dec.decode_stream(idx, *tabs.y)
        _check_symbols(sym, who)
        return sym

    return _context_code(net, hyper, y_shape, read)


def _check_symbols(symbols: list[int], who: str) -> None:
    if symbols and max(max(symbols), -min(symbols)) > SYMBOL_LIMIT:
        raise PayloadError(f"{who}: the entropy-coded stream is corrupt (it decodes to out-of-range symbols)")


def _reencode(tabs: _Cache, z_sym: list[int], z_idx: list[int], y_sym: list[int], y_idx: list[int]) -> bytes:
    from compressai.ans import BufferedRansEncoder

    enc = BufferedRansEncoder()
    enc.encode_with_indexes(z_sym, z_idx, *tabs.z)
    enc.encode_with_indexes(y_sym, y_idx, *tabs.y)
    return enc.flush()


@torch.inference_mode()
def decode_levels(net: FeatureCompressionNet, stream: bytes, p2_size: tuple[int, int], who: str = "learned",
                  verify: bool = True) -> list[torch.Tensor]:
    """Inverse of `encode_levels` for a P2 grid of `p2_size` (unpadded): padded [p2..p5], (1,C,H,W)."""
    from compressai.ans import RansDecoder

    s = net.total_stride
    hp, wp = (math.ceil(p2_size[0] / s) * s, math.ceil(p2_size[1] / s) * s)
    z_shape = (hp // s, wp // s)
    y_shape = (hp // net.y_stride, wp // net.y_stride)
    n_sym = net.entropy_bottleneck.channels * z_shape[0] * z_shape[1] + net.M * y_shape[0] * y_shape[1]
    if len(stream) < 8:
        raise PayloadError(f"{who}: payload truncated (the entropy-coded stream has {len(stream)} bytes, at least 8)")
    tabs = _tables(net)
    dec = RansDecoder()
    # zero padding: a corrupt stream may make the decoder read past its end; it reads zeros we own
    dec.set_stream(bytes(stream) + bytes(16 * n_sym + 64 * len(stream) + 1024))
    z_idx = _z_indexes(net, z_shape).reshape(-1).tolist()
    z_sym = dec.decode_stream(z_idx, *tabs.z)
    _check_symbols(z_sym, who)
    med = _z_medians(net)
    z_hat = torch.tensor(z_sym, dtype=torch.float32).view(1, -1, *z_shape).clamp_(-1e4, 1e4) + med
    scales, means = net.hyper_params_exact(z_hat)
    if net.context:
        y_hat, y_sym, y_idx = _context_decode(net, dec, tabs, torch.cat([scales, means], dim=1), y_shape, who)
    else:
        y_idx = _scale_indexes(net, scales).reshape(-1).tolist()
        y_sym = dec.decode_stream(y_idx, *tabs.y)
        _check_symbols(y_sym, who)
        y_hat = torch.tensor(y_sym, dtype=torch.float32).view(1, net.M, *y_shape) + means
    if verify and _reencode(tabs, z_sym, z_idx, y_sym, y_idx) != bytes(stream):
        raise PayloadError(f"{who}: the entropy-coded stream is corrupt (its decoded symbols do not re-encode to it)")
    out = net.g_s(_channels_last([y_hat.clamp_(-1e4, 1e4)])[0])
    lim = net.feat_absmax * 2.0
    return [torch.nan_to_num(t.contiguous(), nan=0.0).clamp_(-float(lim[i]), float(lim[i])) for i, t in enumerate(out)]


# ----------------------------------------------------------------------------- the codec


_SHA_CACHE: dict[tuple, str] = {}


@contextlib.contextmanager
def _threads(n: int | None):
    if not n or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_dir(path: str) -> Path:
    """A checkpoint folder or file of a config: the working directory's, else the packaged one."""
    return resolve_data_path(path)


class LearnedCodec(FeatureCodec):
    """A learned feature codec with one checkpoint per quality (rate point).

    Args:
        name: codec name (the yaml's key).
        arch: interleaved | cascade (must match the checkpoints').
        checkpoint_dir: folder of q{k}.pt / q{k}.json (relative: working dir, then repo root).
        rates: quality indices to run (default: 1..len(lambdas)).
        lambdas: the rate-distortion weight of each quality (training only).
        net: network settings (training only; a checkpoint carries its own).
        net_by_quality: per-quality changes to `net` (training only), e.g. {4: {M: 192}}.
        front_check: warn | error | off: what to do when the front a checkpoint was trained
            on (name + sha256 of its weights, from the checkpoint) has changed on disk.
        max_p2_cells: decode bound on the P2 grid (H x W) a header may announce.
        verify: re-encode decoded symbols to detect corrupt streams (cheap; keep on).
        threads: torch threads for the transforms inside decode. 1 (default) makes the
            decoded features bit-identical whatever thread count the caller runs with (oneDNN's
            convolutions sum in a thread-dependent order); null leaves the caller's setting.
        encode_threads: torch threads inside encode (default 2: the cores the VVC anchor's
            encoder uses on the default set's frames). A fixed count, so the bytes never depend on
            the caller's; null uses the caller's.
    """

    knob = "quality"
    version = 1
    counts_macs = True  # transforms and hyperprior are torch; the rANS coder adds no multiplies

    def __init__(self, name: str, arch: str, checkpoint_dir: str, rates: Sequence[object] | None = None,
                 lambdas: Sequence[float] | None = None, net: dict | None = None,
                 net_by_quality: dict | None = None, front_check: str = "warn",
                 max_p2_cells: int = MAX_P2_CELLS, verify: bool = True, threads: int | None = 1,
                 encode_threads: int | None = 2):
        if arch not in ("interleaved", "cascade"):
            raise ConfigError(f"codec.{name}.arch={arch!r}: choose interleaved or cascade")
        if front_check not in ("warn", "error", "off"):
            raise ConfigError(f"codec.{name}.front_check={front_check!r}: choose warn, error or off")
        self.arch = arch
        self.tag = TAGS[arch]
        self.lambdas = [float(v) for v in lambdas] if lambdas else []
        self.front_check = front_check
        self.max_p2_cells = int(max_p2_cells)
        self.verify = bool(verify)
        self.threads = int(threads) if threads else None
        self.encode_threads = int(encode_threads) if encode_threads else None
        self.checkpoint_dir = resolve_dir(checkpoint_dir)
        self._nets: dict[int, tuple[FeatureCompressionNet, dict]] = {}
        if rates is None:
            rates = list(range(1, len(self.lambdas) + 1)) if self.lambdas else [1, 2, 3, 4]
        super().__init__(name, [int(r) for r in rates])
        for rp in self.rates:
            if not 1 <= int(rp.value) <= 255:
                raise ConfigError(f"codec.{name}.rates: quality {rp.value} outside 1..255")
            self.checkpoint_path(int(rp.value), must_exist=True)

    def describe_encoder(self) -> str:
        return f"learned {self.arch} ({self.checkpoint_dir.name}/q*.pt)"

    def train_command(self, quality: int) -> str:
        return f"vcmbench train codec={self.name} quality={quality} copy_to={self._dir_for_command()}"

    def _dir_for_command(self) -> str:
        return display_path(self.checkpoint_dir)

    def files(self) -> list[Path]:
        return [self.checkpoint_path(int(rp.value)) for rp in self.rates]

    def trained_on(self) -> list[dict]:
        """From each rate's q{k}.json: its `trained_on` block, or for a checkpoint made before
        checkpoints kept one, the same facts from its front, config and net settings."""
        from vcmbench.codecs.learned.trained_on import read_checkpoint_info, trained_on_of

        out = []
        for rp in self.rates:
            path = self.checkpoint_path(int(rp.value))
            info = read_checkpoint_info(path, lambda p: load_checkpoint(p)[1])
            out.append(trained_on_of(info) | {"source": display_path(path)})
        return out

    def checkpoint_path(self, quality: int, must_exist: bool = False) -> Path:
        path = self.checkpoint_dir / f"q{quality}.pt"
        if must_exist and not path.is_file():
            raise CheckpointError(
                f"codec {self.name}: no checkpoint for quality={quality} ({path}). Train it with "
                f"`{self.train_command(quality)}`, or point codec.{self.name}.checkpoint_dir at a folder of "
                f"q{{k}}.pt files, or drop quality {quality} from codec.{self.name}.rates"
            )
        return path

    def net(self, quality: int) -> tuple[FeatureCompressionNet, dict]:
        if quality not in self._nets:
            path = self.checkpoint_path(quality, must_exist=True)
            net, meta = load_checkpoint(path)
            if meta.get("arch") != self.arch:
                raise CheckpointError(f"{path}: a {meta.get('arch')} checkpoint; codec {self.name} is {self.arch}")
            self._check_front(path, meta, quality)
            net.to(memory_format=torch.channels_last)  # inference only here: see _channels_last
            self._nets[quality] = (net, meta)
        return self._nets[quality]

    def prepare(self, rate: RatePoint) -> None:
        self.net(int(rate.value))

    def _check_front(self, path: Path, meta: dict, quality: int) -> None:
        front = meta.get("front") or {}
        if self.front_check == "off" or not front.get("weights") or front.get("weights") == "none":
            return
        from vcmbench.codecs.learned.features import _resolve
        from vcmbench.paths import file_sha256

        wpath = _resolve(str(front["weights"]))
        if wpath is None:
            return
        st = wpath.stat()
        key = (str(wpath), st.st_size, st.st_mtime_ns)
        if key not in _SHA_CACHE:
            _SHA_CACHE[key] = file_sha256(wpath)
        sha = _SHA_CACHE[key]
        if sha != front.get("sha256"):
            msg = (f"codec {self.name}: {path} was trained on features of {front.get('name')} with weights "
                   f"{front['weights']} sha256 {str(front.get('sha256'))[:12]}, but that file now has sha256 "
                   f"{sha[:12]}: the detector changed, so this codec no longer matches its features. Retrain it "
                   f"with `{self.train_command(quality)}` (or set codec.{self.name}.front_check=off)")
            if self.front_check == "error":
                raise CheckpointError(msg)
            warnings.warn(msg, stacklevel=2)

    # -- payload ------------------------------------------------------------------------------
    def _encode_body(self, features: Features, rate: RatePoint, shapes) -> bytes:
        q = int(rate.value)
        net, meta = self.net(q)
        if any(s[0] != net.N for s in shapes):  # the same for every image of this model: a setting, not a shape
            raise ConfigError(f"codec {self.name}: features have {[s[0] for s in shapes]} channels; its checkpoints "
                             f"code {net.N}-channel levels (a model split before its FPN, model.split=backbone, "
                             f"sends C2..C5 of other widths, for which it has no checkpoints: code those with raw, "
                             f"anchor_*, pack_* or the image codecs)")
        self._check_geometry(shapes, net, ShapeError)
        self._check_statistics(features, net, q)
        with _threads(self.encode_threads):
            stream = encode_levels(net, [features[k].detach().to("cpu") for k in LEVELS])
        return bytes.fromhex(meta["model_id"]) + struct.pack(">B", q) + stream

    def _check_statistics(self, features: Features, net: FeatureCompressionNet, quality: int) -> None:
        """Warn when the features' level RMS is far from the training set's: another front. Checked
        on the first image a codec codes (a run's front is the same for every image)."""
        if getattr(self, "_stats_checked", False):
            return
        self._stats_checked = True
        rms = [float(features[k].detach().float().pow(2).mean().sqrt()) for k in LEVELS]
        ratio = [r / float(s) for r, s in zip(rms, net.feat_scale)]
        if any(not 1 / 4 <= v <= 4 for v in ratio):
            warnings.warn(
                f"codec {self.name}: the features' per-level RMS {[round(v, 3) for v in rms]} is far from that of the "
                f"features its checkpoints were trained on {[round(float(v), 3) for v in net.feat_scale]} (front "
                f"{net_front_name(self, quality)}): a different front? Train checkpoints for it with "
                f"`vcmbench train codec={self.name} model=<your model> ...`",
                stacklevel=3,
            )

    def _check_geometry(self, shapes, net: FeatureCompressionNet, error) -> None:
        h2, w2 = shapes[0][1], shapes[0][2]
        if h2 * w2 > self.max_p2_cells:
            raise error(f"codec {self.name}: P2 grid {h2}x{w2} exceeds max_p2_cells={self.max_p2_cells}"
                        + (" (corrupt header)" if error is PayloadError else ""))
        s = net.total_stride
        hp, wp = math.ceil(h2 / s) * s, math.ceil(w2 / s) * s
        for i, (_c, h, w) in enumerate(shapes):
            if h > hp >> i or w > wp >> i or h < (h2 >> i) // 2 or w < (w2 >> i) // 2:
                raise error(f"codec {self.name}: level {LEVELS[i]} is {h}x{w}, which does not fit a P2 grid of "
                            f"{h2}x{w2} (each level must be about half the one before)")

    def _decode_body(self, body, shapes) -> Features:
        r = Reader(body, self.name)
        model_id = r.take(4).hex()
        q = r.u8()
        stream = r.rest()
        if not any(int(rp.value) == q for rp in self.rates) and not self.checkpoint_path(q).is_file():
            raise PayloadError(f"{self.name}: payload says quality={q}, for which {self.checkpoint_dir} has no "
                               f"checkpoint (corrupt header, or made with another set of checkpoints)")
        try:
            net, meta = self.net(q)
        except CheckpointError as exc:
            raise PayloadError(f"{self.name}: cannot load the checkpoint of quality={q}: {exc}") from None
        if model_id != meta["model_id"]:
            raise PayloadError(
                f"{self.name}: payload made by model {model_id}, this decoder's quality={q} checkpoint is model "
                f"{meta['model_id']} ({self.checkpoint_path(q)}); it was encoded with another (retrained?) model"
            )
        if any(s[0] != net.N for s in shapes):
            raise PayloadError(f"{self.name}: header says {[s[0] for s in shapes]} channels, the model codes {net.N}")
        self._check_geometry(shapes, net, PayloadError)
        try:
            with _threads(self.threads):
                levels = decode_levels(net, stream, (shapes[0][1], shapes[0][2]), self.name, self.verify)
        except PayloadError:
            raise
        except Exception as exc:  # the range decoder and the transforms on garbage: never a crash
            raise PayloadError(f"{self.name}: the entropy-coded stream does not decode ({type(exc).__name__}: {exc})") from None
        return {k: t[0, : s[0], : s[1], : s[2]].contiguous() for k, t, s in zip(LEVELS, levels, shapes)}


def net_front_name(codec: LearnedCodec, quality: int) -> str:
    return str((codec.net(quality)[1].get("front") or {}).get("name", "unknown"))


def build(name: str, arch: str, checkpoint_dir: str, **kw) -> LearnedCodec:
    """Hydra target of conf/codec/learned_*.yaml."""
    return LearnedCodec(name, arch, checkpoint_dir, **kw)
