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

The stream is `entropy`'s (integrity, symbol limits, the context model), the checkpoint files
`checkpoint`'s (format, fingerprints, parent chains); this module is the codec around them.
Their public names are re-exported here, where scripts, tests and `vcmbench.train` import them.
"""

from __future__ import annotations

import math
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from vcmbench.codecs.base import FeatureCodec, RatePoint, register_tags, require_pyramid
from vcmbench.codecs.learned.checkpoint import FORMAT as FORMAT
from vcmbench.codecs.learned.checkpoint import FORMAT_V1 as FORMAT_V1
from vcmbench.codecs.learned.checkpoint import WEIGHT_LEVELS as WEIGHT_LEVELS
from vcmbench.codecs.learned.checkpoint import finalize as finalize
from vcmbench.codecs.learned.checkpoint import load_checkpoint
from vcmbench.codecs.learned.checkpoint import save_checkpoint as save_checkpoint
from vcmbench.codecs.learned.entropy import SYMBOL_LIMIT as SYMBOL_LIMIT
from vcmbench.codecs.learned.entropy import _scale_indexes as _scale_indexes
from vcmbench.codecs.learned.entropy import decode_levels, encode_levels
from vcmbench.codecs.learned.models import FeatureCompressionNet
from vcmbench.codecs.tiling import Reader
from vcmbench.errors import CheckpointError, ConfigError, PayloadError, ShapeError
from vcmbench.paths import display_path, resolve_data_path
from vcmbench.thread_budget import torch_threads as _threads
from vcmbench.types import LEVELS, Features

#: arch -> payload tag
TAGS = {"interleaved": b"LMSI", "cascade": b"LMSC"}
register_tags(f"{__name__}.LearnedCodec", *TAGS.values())

MAX_P2_CELLS = 512 * 512  # decode bound: P2 grid of a 2048 x 2048 input (stride 4)


_SHA_CACHE: dict[tuple, str] = {}


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

    def __init__(
        self,
        name: str,
        arch: str,
        checkpoint_dir: str,
        rates: Sequence[object] | None = None,
        lambdas: Sequence[float] | None = None,
        net: dict | None = None,
        net_by_quality: dict | None = None,
        front_check: str = "warn",
        max_p2_cells: int = MAX_P2_CELLS,
        verify: bool = True,
        threads: int | None = 1,
        encode_threads: int | None = 2,
    ):
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
            net.to(memory_format=torch.channels_last)  # inference only here: see entropy._channels_last
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
            msg = (
                f"codec {self.name}: {path} was trained on features of {front.get('name')} with weights "
                f"{front['weights']} sha256 {str(front.get('sha256'))[:12]}, but that file now has sha256 "
                f"{sha[:12]}: the detector changed, so this codec no longer matches its features. Retrain it "
                f"with `{self.train_command(quality)}` (or set codec.{self.name}.front_check=off)"
            )
            if self.front_check == "error":
                raise CheckpointError(msg)
            warnings.warn(msg, stacklevel=2)

    # -- payload ------------------------------------------------------------------------------
    def _encode_body(self, features: Features, rate: RatePoint, shapes) -> bytes:
        require_pyramid(features, self.name)
        q = int(rate.value)
        net, meta = self.net(q)
        if any(s[0] != net.N for s in shapes):  # the same for every image of this model: a setting, not a shape
            raise ConfigError(
                f"codec {self.name}: features have {[s[0] for s in shapes]} channels; its checkpoints "
                f"code {net.N}-channel levels (a model split before its FPN, model.split=backbone, "
                f"sends C2..C5 of other widths, for which it has no checkpoints: code those with raw, "
                f"anchor_*, pack_* or the image codecs)"
            )
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
            raise error(
                f"codec {self.name}: P2 grid {h2}x{w2} exceeds max_p2_cells={self.max_p2_cells}"
                + (" (corrupt header)" if error is PayloadError else "")
            )
        s = net.total_stride
        hp, wp = math.ceil(h2 / s) * s, math.ceil(w2 / s) * s
        for i, (_c, h, w) in enumerate(shapes):
            if h > hp >> i or w > wp >> i or h < (h2 >> i) // 2 or w < (w2 >> i) // 2:
                raise error(
                    f"codec {self.name}: level {LEVELS[i]} is {h}x{w}, which does not fit a P2 grid of "
                    f"{h2}x{w2} (each level must be about half the one before)"
                )

    def _decode_body(self, body, shapes) -> list[torch.Tensor]:
        if len(shapes) != len(LEVELS):
            raise PayloadError(f"{self.name}: the payload holds {len(shapes)} tensors; this codec codes p2..p5")
        r = Reader(body, self.name)
        model_id = r.take(4).hex()
        q = r.u8()
        stream = r.rest()
        if not any(int(rp.value) == q for rp in self.rates) and not self.checkpoint_path(q).is_file():
            raise PayloadError(
                f"{self.name}: payload says quality={q}, for which {self.checkpoint_dir} has no "
                f"checkpoint (corrupt header, or made with another set of checkpoints)"
            )
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
            raise PayloadError(
                f"{self.name}: the entropy-coded stream does not decode ({type(exc).__name__}: {exc})"
            ) from None
        return [t[0, : s[0], : s[1], : s[2]].contiguous() for t, s in zip(levels, shapes)]


def net_front_name(codec: LearnedCodec, quality: int) -> str:
    return str((codec.net(quality)[1].get("front") or {}).get("name", "unknown"))


def build(name: str, arch: str, checkpoint_dir: str, **kw) -> LearnedCodec:
    """Hydra target of conf/codec/learned_*.yaml."""
    return LearnedCodec(name, arch, checkpoint_dir, **kw)
