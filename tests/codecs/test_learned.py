"""Learned multi-scale feature codecs: networks, training, payloads, determinism.

Quick by design: tiny networks for the training and payload-format tests; the committed
checkpoints (vcmbench/checkpoints/learned_*/q{k}.pt) for the determinism and bytes-vs-likelihood
tests when they exist (the tiny trained model stands in otherwise).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from tests.assets import CHECKPOINTS, REPO
from vcmbench.codecs.learned.codec import (
    LearnedCodec,
    encode_levels,
    load_checkpoint,
    save_checkpoint,
)
from vcmbench.codecs.learned.models import build_net, pad_levels
from vcmbench.errors import CheckpointError, ConfigError, PayloadError
from vcmbench.types import LEVELS

COMMITTED = CHECKPOINTS / "learned_interleaved"
TINY = dict(N=256, C=8, M=8, hyper=8, dec_widths=[8, 8, 8, 8], y_level=5, hyper_down=2, light_up=True)


def _features(seed: int = 0, size: int = 64, n: int = 256) -> dict[str, torch.Tensor]:
    """Smooth random 'FPN-like' levels (a coarse field upsampled), deterministic from the seed."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, k in enumerate(LEVELS):
        s = size >> i
        coarse = torch.randn(1, n, max(1, s // 4), max(1, s // 4), generator=g)
        out[k] = torch.nn.functional.interpolate(coarse, size=(s, s), mode="bilinear", align_corners=False)[0]
    return out


def _tiny_net(arch: str = "interleaved", seed: int = 0):
    torch.manual_seed(seed)
    kw = dict(TINY, in_proj=8) if arch == "interleaved" else dict(TINY, fuse_level=3)
    return build_net(arch, **kw), kw


def _save_tiny(tmp: Path, arch: str = "interleaved", quality: int = 1, front: dict | None = None) -> Path:
    net, kw = _tiny_net(arch)
    net.eval()
    meta = {
        "codec": f"learned_{arch}",
        "quality": quality,
        "lambda": 1.0,
        "front": front or {"name": "ci_frcnn", "weights": "none", "sha256": "random-seed-0"},
    }
    tmp.mkdir(parents=True, exist_ok=True)
    save_checkpoint(net, tmp / f"q{quality}.pt", arch, kw, meta)
    return tmp


# ----------------------------------------------------------------------------- networks


@pytest.mark.parametrize("arch", ["interleaved", "cascade"])
def test_forward_shapes_and_likelihoods(arch):
    net, _ = _tiny_net(arch)
    f = _features(1, 64)
    x = [f[k].unsqueeze(0) for k in LEVELS]
    out = net(x)
    assert [tuple(t.shape) for t in out["levels"]] == [tuple(t.shape) for t in x]
    for lik in out["likelihoods"].values():
        assert ((lik > 0) & (lik <= 1)).all()
    assert net.total_stride == 32 and net.y_stride == 8


@pytest.mark.parametrize("arch", ["interleaved", "cascade"])
@pytest.mark.parametrize("y_level", [4, 5, 6])
def test_branch_decoder_every_level_has_its_branch_and_no_weight_is_unused(arch, y_level):
    """decoder=branches: one branch per level from y_hat plus bottom-up mixing; every
    parameter gets a gradient (none unused, unlike the trunk's first up block with y on P4)."""
    torch.manual_seed(0)
    kw = dict(TINY, decoder="branches", mix_width=8, ste=True, y_level=y_level)
    kw.update(in_proj=8) if arch == "interleaved" else kw.update(fuse_level=min(3, y_level))
    net = build_net(arch, **kw)
    f = _features(2, 64 if y_level < 6 else 128)
    x = [f[k].unsqueeze(0) for k in LEVELS]
    net.train()
    out = net(x)
    assert [tuple(t.shape) for t in out["levels"]] == [tuple(t.shape) for t in x]
    (sum(t.pow(2).mean() for t in out["levels"]) + sum(-v.log().mean() for v in out["likelihoods"].values())).backward()
    unused = [
        n
        for n, p in net.named_parameters()
        if p.requires_grad and p.grad is None and not n.startswith("entropy_bottleneck.quantiles")
    ]
    assert unused == []


@pytest.mark.timeout(60)
def test_the_two_learned_codecs_are_of_equal_size():
    """The cascade ablation compares designs only while the sizes match (within 5 %):
    the yaml networks and the committed checkpoints (their json) both."""
    from omegaconf import OmegaConf

    from vcmbench.codecs.learned.models import count_parameters
    from vcmbench.config import all_codec_configs

    configs, sizes = all_codec_configs(include_optional=True), {}
    for name in ("learned_interleaved", "learned_cascade"):
        node = configs[name]
        sizes[name] = count_parameters(build_net(node.arch, **OmegaConf.to_container(node.net)))
        for info in sorted((CHECKPOINTS / name).glob("q*.json")):
            assert json.loads(info.read_text())["parameters"] == sizes[name], info
    small, large = sorted(sizes.values())
    assert large <= 1.05 * small, sizes


def test_encoder_attention_is_optional():
    kw = dict(TINY, decoder="branches", mix_width=8, in_proj=8)
    with_block, without = build_net("interleaved", **kw), build_net("interleaved", enc_attention=False, **kw)
    assert type(with_block.g_a_tail[0]).__name__ == "AttentionBlock"
    assert [type(m).__name__ for m in without.g_a_tail] == ["Conv2d"]
    # the decoder's attention follows `attention` alone
    assert sum(type(m).__name__ == "AttentionBlock" for m in without.g_s_branches.modules()) == 4
    f = _features(1)
    with torch.no_grad():
        y = without.g_a([f[k].unsqueeze(0) for k in LEVELS])
    assert y.shape == (1, TINY["M"], 64 // without.y_stride, 64 // without.y_stride)


def test_ste_feeds_the_decoder_rounded_latents():
    torch.manual_seed(0)
    kw = dict(TINY, decoder="branches", mix_width=8, ste=True, in_proj=8)
    net = build_net("interleaved", **kw)
    net.train()
    f = _features(3, 64)
    x = [f[k].unsqueeze(0) for k in LEVELS]
    seen = {}
    net.h_s.register_forward_hook(lambda mod, inp, out: seen.__setitem__("means", out.chunk(2, 1)[1].detach()))

    def decoder(y_hat):
        seen["y_hat"] = y_hat.detach()
        return [t.clone() for t in x]

    net.g_s = decoder
    net(x)
    offset = seen["y_hat"] - seen["means"]
    assert torch.allclose(offset, torch.round(offset), atol=1e-4) and offset.abs().max() > 0


def test_pad_levels_odd_sizes():
    levels = [torch.randn(1, 4, 50, 38), torch.randn(1, 4, 25, 19), torch.randn(1, 4, 13, 10), torch.randn(1, 4, 7, 5)]
    padded, (hp, wp) = pad_levels(levels, 32)
    assert (hp, wp) == (64, 64)
    assert [tuple(t.shape[-2:]) for t in padded] == [(64, 64), (32, 32), (16, 16), (8, 8)]
    assert torch.equal(padded[0][..., :50, :38], levels[0])


@pytest.mark.timeout(60)
def test_scale_indexes_match_compressai_build_indexes():
    """The sorted-search CDF index equals GaussianConditional.build_indexes everywhere, the table's
    own values (ties), values between them, below its floor and above its top included."""
    from vcmbench.codecs.learned.codec import _scale_indexes

    net = build_net("interleaved", **TINY)
    net.update(force=True)
    table = net.gaussian_conditional.scale_table.double()
    g = torch.Generator().manual_seed(0)
    scales = torch.cat(
        [
            table,
            torch.nextafter(table, table * 2),
            torch.nextafter(table, table * 0),
            torch.rand(4000, generator=g, dtype=torch.float64) * 80,
            torch.tensor([0.0, 1e-9, 1e3]),
        ]
    )
    for dtype in (torch.float64, torch.float32):
        s = scales.to(dtype).view(1, -1, 1, 1)
        assert torch.equal(_scale_indexes(net, s), net.gaussian_conditional.build_indexes(s))


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory):
    """train_codec on a tiny network: features of ci_frcnn (random weights) on 6 synthetic scenes."""

    from vcmbench.config import compose_config
    from vcmbench.train.codec import train_codec

    root = tmp_path_factory.mktemp("learned_train")
    net = ",".join(f"{k}:{json.dumps(v)}" for k, v in dict(TINY, in_proj=8, attention=False).items())
    overrides = [
        "model.weights=none",
        f"features.cache_dir={root / 'cache'}",
        "features.train_images=6",
        "features.val_images=1",
        f"train_set.cache_dir={root / 'scenes'}",
        f"val_set.cache_dir={root / 'scenes'}",
        "train_set.count=6",
        "val_set.count=1",
        "steps=16",
        "batch_size=2",
        "crop=32",
        "log_every=4",
        "val_every=8",
        "checkpoint_every=8",
        "progress=false",
        "threads=1",
        "quality=2",
        "lmbda=4.0",
        "optimizer.lr=2e-3",
        "optimizer.schedule=constant",
        f"codec.learned_interleaved.net={{{net}}}",
        f"copy_to={root / 'ckpt'}",
    ]
    cfg = compose_config("train", overrides)
    info = train_codec(cfg, str(root / "run"))
    return root, info


def test_training_reduces_loss_and_writes_checkpoint(trained_tiny):
    root, info = trained_tiny
    losses = info["losses"]
    assert len(losses) == 16
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.9 * first, (first, last)
    for name in ("q2.pt", "q2.json", "train.csv", "val.csv"):
        assert (root / "run" / name).is_file(), name
    assert not (root / "run" / "train_state.pt").exists()
    js = json.loads((root / "ckpt" / "q2.json").read_text())
    assert js["lambda"] == 4.0 and js["quality"] == 2 and js["steps"] == 16
    assert js["model_id"] == load_checkpoint(root / "ckpt" / "q2.pt")[1]["model_id"]
    for key in ("bpp", "bpp_est", "mse", "loss"):
        assert key in js["val"]
    assert js["front"]["name"] == "ci_frcnn" and js["config"]["quality"] == 2
    # P2's relative error, the cheap stand-in for mAP, is logged while training and validating
    import pandas as pd

    for log in ("train.csv", "val.csv"):
        rel = pd.read_csv(root / "run" / log)["rel_p2"]
        assert rel.notna().all() and (rel > 0).all() and (rel < 10).all(), log


def test_level_weights_are_per_level_or_one_for_all():
    from omegaconf import OmegaConf

    from vcmbench.errors import ConfigError
    from vcmbench.train.codec import level_weights_of, relative_error

    assert level_weights_of(OmegaConf.create({"level_weight": 0.2})) == [0.2] * 5
    assert level_weights_of(OmegaConf.create({"level_weight": 0.2, "level_weights": [1, 0.5, 0.2, 0.1, 0]})) == [
        1.0,
        0.5,
        0.2,
        0.1,
        0.0,
    ]
    with pytest.raises(ConfigError, match=r"loss.level_weights=\[1, 2\]: give 5 weights"):
        level_weights_of(OmegaConf.create({"level_weight": 0.2, "level_weights": [1, 2]}))
    assert relative_error(0.09, 1.0) == pytest.approx(0.3)


def test_training_resumes_after_interruption(trained_tiny, monkeypatch):

    from vcmbench.config import compose_config
    from vcmbench.train import codec as train_mod

    root, _ = trained_tiny
    net = ",".join(f"{k}:{json.dumps(v)}" for k, v in dict(TINY, in_proj=8, attention=False).items())
    overrides = [  # the fixture's cached features, a fresh run dir
        "model.weights=none",
        f"features.cache_dir={root / 'cache'}",
        "features.train_images=6",
        "features.val_images=1",
        f"train_set.cache_dir={root / 'scenes'}",
        f"val_set.cache_dir={root / 'scenes'}",
        "train_set.count=6",
        "val_set.count=1",
        "steps=8",
        "batch_size=2",
        "crop=32",
        "log_every=2",
        "val_every=0",
        "checkpoint_every=4",
        "progress=false",
        "threads=1",
        "quality=1",
        "lmbda=1.0",
        f"codec.learned_interleaved.net={{{net}}}",
    ]
    cfg = compose_config("train", overrides)
    real_batch = train_mod.CropSampler.batch

    def interrupted(self, step, *a, **k):
        if step == 6:
            raise KeyboardInterrupt
        return real_batch(self, step, *a, **k)

    monkeypatch.setattr(train_mod.CropSampler, "batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train_codec(cfg, str(root / "resume"))
    assert (root / "resume" / "train_state.pt").is_file()
    monkeypatch.setattr(train_mod.CropSampler, "batch", real_batch)
    info = train_mod.train_codec(cfg, str(root / "resume"))
    assert len(info["losses"]) == 4 and info["steps"] == 8  # steps 4..7 in this process
    assert not (root / "resume" / "train_state.pt").exists()


def test_task_term_uses_the_back_and_has_gradients():
    from vcmbench.train.codec import TaskTerm
    from vcmbench.vision.ci_frcnn import build

    det = build(weights="none")
    term = TaskTerm(det, torch.device("cpu"))
    ref = [_features(9, 32)[k].unsqueeze(0) for k in LEVELS]
    assert float(term(ref, ref)) == 0.0
    out = [(t + 0.1 * torch.randn_like(t)).requires_grad_(True) for t in ref]
    val = term(out, ref)
    val.backward()
    assert float(val.detach()) > 0 and all(t.grad is not None for t in out)
    assert all(p.grad is None for p in det.model.rpn.head.parameters())  # the back stays frozen


def _trained_checkpoint(trained_tiny) -> tuple[Path, int]:
    """The committed q3 checkpoint when present, else the tiny one trained above."""
    if (COMMITTED / "q3.pt").is_file():
        return COMMITTED, 3
    return trained_tiny[0] / "ckpt", 2


def _val_features(n: int = 2) -> list[list[torch.Tensor]]:
    """Features of the committed detector on synthetic val scenes when it exists, else smooth random ones."""
    weights = CHECKPOINTS / "ci_frcnn" / "ci_frcnn.pt"
    if not weights.is_file():
        return [[_features(s)[k] for k in LEVELS] for s in range(n)]
    from vcmbench.datasets.synthetic import render
    from vcmbench.vision.ci_frcnn import build

    det = build(weights=str(weights))
    out = []
    for s in range(n):
        img, _ = render(1_000_000 + s, 256, 256)
        f = det.front(torch.from_numpy(img).permute(2, 0, 1).contiguous()).features
        out.append([f[k] for k in LEVELS])
    return out


def test_bytes_agree_with_likelihoods(trained_tiny):
    folder, q = _trained_checkpoint(trained_tiny)
    net, _ = load_checkpoint(folder / f"q{q}.pt")
    est, real = 0.0, 0
    for lv in _val_features(3):
        x, _ = pad_levels([t.unsqueeze(0) for t in lv], net.total_stride)
        with torch.no_grad():
            lik = net(x)["likelihoods"]
        est += float(sum(-torch.log2(v).sum() for v in lik.values()))
        real += 8 * len(encode_levels(net, lv))
    # the rANS coder ends each stream with its 64-bit state: allow that on top of a few percent.
    # (The 16-step tiny stand-in is far from converged: values land in the likelihood floor
    # (1e-9, ~30 bits) the coder's bypass mode spends fewer bits on, so it only gets 25 %.)
    tol = 0.05 if folder == COMMITTED else 0.25
    assert abs(real - est) <= tol * est + 64 * 3, (real, est)


# ----------------------------------------------------------------------------- payloads


@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory):
    folder = _save_tiny(tmp_path_factory.mktemp("tiny_ckpt"))
    return LearnedCodec("learned_interleaved", "interleaved", str(folder), rates=[1])


def test_roundtrip_shapes_and_header(tiny_codec):
    f = _features(2, 48)  # 48 P2 cells: padded to 64 inside, cropped back after decoding
    f = {k: v[:, : v.shape[1] - (1 if k == "p2" else 0)] for k, v in f.items()}  # odd height
    payload = tiny_codec.encode(f, tiny_codec.rates[0])
    assert payload[:4] == b"LMSI"
    out = tiny_codec.decode(payload)
    for k in LEVELS:
        assert out[k].shape == f[k].shape and out[k].dtype == torch.float32
        assert torch.isfinite(out[k]).all()
    net, meta = tiny_codec.net(1)
    assert payload[30:34] == bytes.fromhex(meta["model_id"]) and payload[34] == 1


def test_corrupt_payloads_error_or_finite(tiny_codec):
    import random

    f = _features(3, 64)
    payload = tiny_codec.encode(f, tiny_codec.rates[0])
    rnd = random.Random(0)
    cases = [payload[:n] for n in (0, 5, 29, 30, 34, 35, 36, 40, len(payload) - 1)]
    cases += [payload + b"\x00", payload + bytes(rnd.randrange(256) for _ in range(40))]
    for _ in range(40):
        b = bytearray(payload)
        i = rnd.randrange(len(b))
        b[i] ^= 1 << rnd.randrange(8)
        cases.append(bytes(b))
    for _ in range(10):
        cases.append(payload[:35] + rnd.randbytes(rnd.randrange(1, 4000)))
    cases.append(payload[:35] + b"\xff" * 64)  # long bypass runs: must neither hang nor crash
    errors = 0
    for b in cases:
        try:
            out = tiny_codec.decode(b)
        except PayloadError:
            errors += 1
            continue
        for k in LEVELS:
            assert out[k].shape == f[k].shape and torch.isfinite(out[k]).all()
    assert errors >= len(cases) - 12


def test_oversized_header_is_refused(tiny_codec):
    f = _features(4, 64)
    payload = bytearray(tiny_codec.encode(f, tiny_codec.rates[0]))
    # P2 announced as 60000 x 60000: refused before anything is allocated
    payload[6 + 2 : 6 + 6] = struct.pack(">HH", 60000, 60000)
    with pytest.raises(PayloadError, match="max_p2_cells|does not fit"):
        tiny_codec.decode(bytes(payload))


def test_decoder_refuses_another_model(tmp_path, tiny_codec):
    f = _features(5, 64)
    payload = tiny_codec.encode(f, tiny_codec.rates[0])
    # a differently initialised model of the same architecture: another model id
    torch.manual_seed(1)
    net, kw = build_net("interleaved", **dict(TINY, in_proj=8)), dict(TINY, in_proj=8)
    save_checkpoint(net.eval(), tmp_path / "q1.pt", "interleaved", kw, {"quality": 1, "front": {}})
    other = LearnedCodec("learned_interleaved", "interleaved", str(tmp_path), rates=[1])
    assert other.net(1)[1]["model_id"] != tiny_codec.net(1)[1]["model_id"]
    with pytest.raises(PayloadError, match="another"):
        other.decode(payload)
    # and a cascade codec refuses an interleaved payload by its tag
    casc = LearnedCodec("learned_cascade", "cascade", str(_save_tiny(tmp_path / "c", "cascade")), rates=[1])
    with pytest.raises(PayloadError, match="another codec"):
        casc.decode(payload)


def test_missing_checkpoint_names_file_and_command(tmp_path):
    with pytest.raises(CheckpointError) as exc:
        LearnedCodec("learned_interleaved", "interleaved", str(tmp_path), rates=[1, 2])
    msg = str(exc.value)
    assert "q1.pt" in msg and "vcmbench train codec=learned_interleaved quality=1" in msg


def test_front_mismatch_warns_or_refuses(tmp_path):
    weights = tmp_path / "det.pt"
    weights.write_bytes(b"new detector")
    front = {"name": "ci_frcnn", "weights": str(weights), "sha256": "0" * 64}
    folder = _save_tiny(tmp_path / "ck", front=front)
    codec = LearnedCodec("learned_interleaved", "interleaved", str(folder), rates=[1])
    with pytest.warns(UserWarning, match="detector changed"):
        codec.net(1)
    strict = LearnedCodec("learned_interleaved", "interleaved", str(folder), rates=[1], front_check="error")
    with pytest.raises(CheckpointError, match="vcmbench train"):
        strict.net(1)


def test_features_of_another_front_warn(tmp_path):
    codec = LearnedCodec("learned_interleaved", "interleaved", str(_save_tiny(tmp_path)), rates=[1])
    f = {k: v * 50 for k, v in _features(6, 32).items()}  # far from the training RMS (1.0 here)
    with pytest.warns(UserWarning, match="different front"):
        codec.encode(f, codec.rates[0])


def test_corrupt_checkpoint_is_refused(tmp_path):
    folder = _save_tiny(tmp_path)
    blob = torch.load(folder / "q1.pt", weights_only=True)
    k = next(iter(blob["state"]))
    blob["state"][k] = blob["state"][k] + 1
    torch.save(blob, folder / "q1.pt")
    with pytest.raises(CheckpointError, match="fingerprint"):
        load_checkpoint(folder / "q1.pt")


# ----------------------------------------------------------------------------- determinism

_CHILD = r"""
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[3]))
from vcmbench.codecs.learned.codec import LearnedCodec
sys.path.insert(0, sys.argv[4])
from test_learned import _features
codec = LearnedCodec("c", "interleaved", sys.argv[1], rates=[int(sys.argv[2])])
payload = codec.encode(_features(7, 64), codec.rates[0])
out = codec.decode(payload)
print(hashlib.sha256(payload).hexdigest(), hashlib.sha256(b"".join(out[k].numpy().tobytes() for k in ("p2", "p3", "p4", "p5"))).hexdigest())
"""


def test_encode_decode_deterministic_across_processes(trained_tiny):
    folder, q = _trained_checkpoint(trained_tiny)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    procs = [  # two processes at once, with two thread counts
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(folder), str(q), str(threads), str(Path(__file__).parent)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(REPO),
        )
        for threads in (1, 2)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        outs.append(out.strip().splitlines()[-1])
    assert outs[0] == outs[1]


# ----------------------------------------------------------------------------- configs


def test_train_config_composes():

    from vcmbench.config import compose_config
    from vcmbench.train.codec import _codec_node, _lambda

    cfg = compose_config("train", ["codec=learned_cascade", "quality=1"])
    name, node = _codec_node(cfg)
    assert name == "learned_cascade" and node.arch == "cascade"
    assert _lambda(cfg, node, 1) == float(node.lambdas[0])
    assert cfg.train_set.name == "synthetic_train" and cfg.val_set.name == "synthetic_val"
    assert cfg.model.name == "ci_frcnn"
    with pytest.raises(ConfigError):
        _lambda(cfg, node, 99)


@pytest.mark.parametrize("name", ["learned_interleaved", "learned_cascade"])
def test_codec_yaml_instantiates_with_committed_checkpoints(name, codec_from_yaml):
    folder = CHECKPOINTS / name
    if not (folder / "q1.pt").is_file():
        pytest.skip(f"no committed checkpoints in {folder}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the committed checkpoints match the committed detector
        codec = codec_from_yaml(name)
        for rp in codec.rates:
            net, meta = codec.net(int(rp.value))
            js = json.loads((folder / f"q{rp.value}.json").read_text())
            assert js["model_id"] == meta["model_id"]
            assert js["front"]["sha256"] == meta["front"]["sha256"]
    # real features of a held-out scene (random tensors are far outside what the models were trained on)
    from vcmbench.datasets.synthetic import render
    from vcmbench.vision.ci_frcnn import build as ci_frcnn

    image, _ = render(1_000_007, 256, 256)
    feats = ci_frcnn().front(torch.from_numpy(image).permute(2, 0, 1).contiguous()).features
    sizes = [len(codec.encode(feats, rp)) for rp in codec.rates]
    assert sizes == sorted(sizes), sizes  # quality k+1 spends more bytes than quality k


def test_a_fine_tune_is_stored_as_its_change_from_its_parent(tmp_path):
    """Rate points fine-tuned from a parent store their small change (few bits) and name the parent."""
    from vcmbench.codecs.learned.codec import WEIGHT_LEVELS

    net, kw = _tiny_net()
    net.eval()
    meta = {"codec": "learned_interleaved", "quality": 2, "lambda": 1.0, "front": {}}
    base = save_checkpoint(net, tmp_path / "q2.pt", "interleaved", kw, meta)
    parent_net, _ = load_checkpoint(tmp_path / "q2.pt")
    torch.manual_seed(5)
    with torch.no_grad():  # a fine-tune: every weight moves a little
        for p in net.parameters():
            p.add_(0.05 * p.abs().mean() * torch.randn_like(p))
    trained = {k: v.clone() for k, v in net.state_dict().items()}
    child = save_checkpoint(net, tmp_path / "q1.pt", "interleaved", kw, dict(meta, quality=1), tmp_path / "q2.pt")
    assert child["parent"] == {"file": "q2.pt", "fingerprint": base["fingerprint"]}

    def weight_bytes(path):  # the weights' share of the file (a tiny net's is mostly CDF tables)
        return sum(t["data"].numel() for t in torch.load(path, weights_only=True)["quantized"].values())

    assert weight_bytes(tmp_path / "q1.pt") < 0.8 * weight_bytes(tmp_path / "q2.pt")  # (lzma headers: tiny tensors)
    loaded, lmeta = load_checkpoint(tmp_path / "q1.pt")
    assert lmeta["model_id"] == child["model_id"]
    for k, v in loaded.state_dict().items():  # the stored weights: within half a step of the trained ones
        if v.is_floating_point() and k in trained and not k.startswith(("entropy", "gaussian", "feat_")):
            step = trained[k].reshape(len(trained[k]) if trained[k].dim() else 1, -1).abs().amax(1) / WEIGHT_LEVELS
            err = (v - trained[k]).reshape(len(v) if v.dim() else 1, -1).abs().amax(1)
            assert bool((err <= step * 0.5001 + 1e-12).all()), k
    assert not torch.equal(loaded.state_dict()["g_a_tail.1.weight"], parent_net.state_dict()["g_a_tail.1.weight"])
    # the parent is part of what decodes: another q2.pt, or none, is refused with its name
    other, _ = _tiny_net(seed=1)
    save_checkpoint(other.eval(), tmp_path / "q2.pt", "interleaved", kw, meta)
    with pytest.raises(CheckpointError, match="was made from model .* of q2.pt"):
        load_checkpoint(tmp_path / "q1.pt")
    (tmp_path / "q2.pt").unlink()
    with pytest.raises(CheckpointError, match="q2.pt, which is missing"):
        load_checkpoint(tmp_path / "q1.pt")
