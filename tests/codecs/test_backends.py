"""External codec layer: real encoders (VVC, HEVC, AV1, FFV1, PNG, JPEG) on small frames,
errors that name the codec, the command and the setting; VTM through fake binaries."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from tests.codecs_for_tests import executable_script, fake_vtm
from vcmbench.codecs.backends.codec import ExternalBackend
from vcmbench.codecs.backends.ffmpeg_codecs import (
    AomBackend,
    Ffv1Backend,
    JpegBackend,
    PngBackend,
    SvtAv1Backend,
    VvencBackend,
    X265Backend,
)
from vcmbench.codecs.backends.gop import Gop
from vcmbench.codecs.backends.vtm import VtmBackend
from vcmbench.codecs.backends.x265_cli import X265CliBackend
from vcmbench.errors import ConfigError, ExternalCodecError, MissingDependencyError
from vcmbench.types import LEVELS


def smooth_frames(n: int, h: int, w: int, bits: int, seed: int = 0) -> np.ndarray:
    """Feature-like frames: smooth random fields spanning most of the sample range."""
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, h + 4, w + 4)).cumsum(axis=1).cumsum(axis=2)[:, 4:, 4:]
    x = (x - x.min()) / (np.ptp(x) + 1e-9)
    return np.rint(x * ((1 << bits) - 1)).astype(np.uint16)


def backend_for(cls: type[ExternalBackend], **settings) -> ExternalBackend:
    """Back-end `cls` as a codec named test_FAMILY would build it (errors name codec.test_FAMILY.KEY)."""
    return cls(f"test_{cls.family}", setting_prefix=f"codec.test_{cls.family}", **settings)


def psnr(a: np.ndarray, b: np.ndarray, bits: int) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(((1 << bits) - 1) ** 2 / mse)


# ------------------------------------------------------------------ real encoders


@pytest.mark.parametrize(
    "cls, knob, value, bits, min_psnr",
    [
        (VvencBackend, "qp", 27, 10, 35.0),
        (VvencBackend, "qp", 27, 8, 35.0),
        (X265Backend, "qp", 27, 10, 35.0),
        (X265Backend, "crf", 24, 8, 30.0),
        (AomBackend, "crf", 20, 10, 35.0),
        (SvtAv1Backend, "qp", 20, 10, 35.0),
        (JpegBackend, "q", 3, 8, 35.0),
    ],
)
def test_lossy_backends_round_trip_odd_sized_frames(cls, knob, value, bits, min_psnr):
    be = backend_for(cls)
    frames = smooth_frames(2, 37, 53, bits)  # odd sizes: padded for 4:2:0 encoders, cropped back
    data = be.encode(frames, bits, knob, value, intra=True)
    assert isinstance(data, bytes) and len(data) > 0
    assert be.last_encode_s > 0
    out = be.decode(data, frames.shape, bits)
    assert out.shape == frames.shape and out.dtype == np.uint16
    assert be.last_decode_s > 0
    assert out.max() < (1 << bits)
    assert psnr(out, frames, bits) > min_psnr


@pytest.mark.parametrize("cls", [Ffv1Backend, PngBackend, X265Backend, AomBackend])
@pytest.mark.parametrize("bits", [8, 10])
def test_lossless_backends_are_exact(cls, bits):
    be = backend_for(cls)
    knob = "lossless"
    frames = smooth_frames(3, 24, 40, bits, seed=bits)
    frames[1] = np.random.default_rng(1).integers(0, 1 << bits, frames[1].shape)  # noise too
    out = be.decode(be.encode(frames, bits, knob, None, intra=False), frames.shape, bits)
    np.testing.assert_array_equal(out, frames)


def _bytes_at(
    cls: type[ExternalBackend], knob: str, value: int, threads: int | None, cores: set[int] | None
) -> tuple[bytes, bytes]:
    """One intra frame and a 4-frame low-delay sequence, coded with `threads` (None: the back-end's default)
    while the process (and so the encoder it starts) may only use `cores`."""
    frames = smooth_frames(4, 64, 96, 10, seed=3)
    frames[1:] = np.roll(frames[:1], (2, 3), axis=(1, 2)) // 2 + frames[1:] // 2  # motion to predict
    before = os.sched_getaffinity(0)
    try:
        if cores is not None:
            os.sched_setaffinity(0, cores)
        be = backend_for(cls, threads=threads)
        intra = be.encode(frames[:1], 10, knob, value, intra=True)
        low_delay = be.encode(frames, 10, knob, value, intra=Gop("low_delay", 32))
    finally:
        os.sched_setaffinity(0, before)
    return intra, low_delay


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "cls, knob, value",
    [(VvencBackend, "qp", 37), (X265Backend, "qp", 37), (AomBackend, "crf", 40), (SvtAv1Backend, "qp", 40)],
)
def test_encoders_write_the_same_bytes_whatever_the_threads_and_cores(cls, knob, value):
    """The bytes of an external encoder must not follow the machine: its default thread count follows the
    cores, so every thread count vcmbench may pass and a one-core process must give the same stream.
    Without its pins (libaom's -row-mt 0, a thread count always given to libvvenc) this fails for AV1."""
    reference = _bytes_at(cls, knob, value, None, None)
    assert all(len(b) > 100 for b in reference)
    one_core = {min(os.sched_getaffinity(0))}
    for threads, cores in [(1, None), (2, None), (4, None), (None, one_core), (4, one_core)]:
        assert _bytes_at(cls, knob, value, threads, cores) == reference, (cls.__name__, threads, cores)


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "cls, knob, value, option, plain",
    [
        (VvencBackend, "qp", 37, "-vvenc-params", "SIMD=SCALAR"),
        (X265Backend, "qp", 37, "-x265-params", "asm=none"),
        (SvtAv1Backend, "qp", 40, "-svtav1-params", "asm=c"),
    ],
)
def test_encoders_write_the_same_bytes_without_their_simd_kernels(cls, knob, value, option, plain, monkeypatch):
    """Another instruction set must not change the bytes: each encoder with its SIMD kernels off (plain C)
    writes what it writes with the ones this machine has."""
    reference = _bytes_at(cls, knob, value, None, None)
    own = cls._encoder_args

    def without_simd(self, *args):
        out = own(self, *args)
        if option in out:
            out[out.index(option) + 1] += f":{plain}"
        else:
            out += [option, plain]
        return out

    monkeypatch.setattr(cls, "_encoder_args", without_simd)
    assert _bytes_at(cls, knob, value, None, None) == reference


def test_vvenc_refuses_the_thread_counts_that_change_its_bytes():
    with pytest.raises(ConfigError, match=r"codec.test_vvc.threads=8: libvvenc writes other bytes"):
        backend_for(VvencBackend, threads=8)


def test_vvc_bits_fall_as_qp_rises_and_intra_vs_inter():
    be = backend_for(VvencBackend)
    frames = smooth_frames(4, 32, 48, 10)
    sizes = [len(be.encode(frames[:1], 10, "qp", qp)) for qp in (22, 32, 42)]
    assert sizes[0] > sizes[1] > sizes[2]
    for intra in (True, False):
        data = be.encode(frames, 10, "qp", 32, intra=intra)
        assert be.decode(data, frames.shape, 10).shape == frames.shape


def test_vvc_stream_is_raw_annexb_without_delimiters():
    be = backend_for(VvencBackend)
    data = be.encode(smooth_frames(1, 32, 32, 10), 10, "qp", 37)
    assert data[:3] == b"\x00\x00\x01" or data[:4] == b"\x00\x00\x00\x01"
    nal_types = [data[i + 4] >> 3 for i in range(len(data) - 4) if data[i : i + 3] == b"\x00\x00\x01"]
    assert 20 not in nal_types  # no access-unit delimiters: bytes the anchor does not need


def test_small_frames_are_padded_for_encoders_with_a_minimum_size():
    for cls in (VvencBackend, X265Backend):
        be = backend_for(cls)
        frames = smooth_frames(3, 4, 6, 10)  # p5 of a small image
        out = be.decode(be.encode(frames, 10, "qp", 22, intra=False), frames.shape, 10)
        assert out.shape == frames.shape


def test_samples_out_of_range_and_unknown_knobs_are_refused():
    be = backend_for(X265Backend)
    with pytest.raises(ValueError, match="outside"):
        be.encode(np.full((1, 16, 16), 1024, np.uint16), 10, "qp", 30)
    with pytest.raises(ConfigError, match="rate knobs"):
        be.encode(np.zeros((1, 16, 16), np.uint16), 10, "q", 3)
    with pytest.raises(ConfigError, match="8"):
        JpegBackend("t", setting_prefix="codec.t").encode(np.zeros((1, 16, 16), np.uint16), 10, "q", 3)


@pytest.mark.skipif(shutil.which("x265") is None, reason="no x265 command-line encoder (apt install x265)")
def test_x265_command_line_encoder_with_ffmpeg_decoder():
    be = X265CliBackend("anchor_hevc", setting_prefix="codec.anchor_hevc")
    frames = smooth_frames(2, 20, 70, 10)  # smaller than a CTU: padded to 64
    out = be.decode(be.encode(frames, 10, "lossless", None), frames.shape, 10)
    np.testing.assert_array_equal(out, frames)
    lossy = be.encode(frames, 10, "qp", 27, intra=False)
    assert be.last_command[0] == shutil.which("x265") and "i400" in be.last_command and "--no-info" in be.last_command
    assert psnr(be.decode(lossy, frames.shape, 10), frames, 10) > 35  # by ffmpeg's hevc decoder


def test_missing_x265_path_names_the_setting():
    with pytest.raises(MissingDependencyError, match=r"codec\.pack_tile\.x265"):
        X265CliBackend("pack_tile", setting_prefix="codec.pack_tile", x265="/nonexistent/x265")


# ------------------------------------------------------------------------- errors


def test_missing_ffmpeg_path_names_the_setting(codec_from_yaml):
    with pytest.raises(MissingDependencyError, match=r"codec\.anchor_vvc\.ffmpeg"):
        VvencBackend("anchor_vvc", setting_prefix="codec.anchor_vvc", ffmpeg="/nonexistent/ffmpeg")
    with pytest.raises(MissingDependencyError, match=r"codec\.anchor_hevc\.backend\.ffmpeg.*imageio-ffmpeg==0\.8\.1"):
        codec_from_yaml("anchor_hevc", backend__ffmpeg="/nonexistent/ffmpeg")


def test_encoder_error_names_codec_command_and_output():
    be = VvencBackend("anchor_vvc", setting_prefix="codec.anchor_vvc", extra_args=["-vvenc-params", "NoSuchOption=1"])
    with pytest.raises(ExternalCodecError) as err:
        be.encode(smooth_frames(1, 32, 32, 10), 10, "qp", 37)
    msg = str(err.value)
    assert "anchor_vvc" in msg and "libvvenc" in msg and "NoSuchOption" in msg and "printed" in msg


def test_undecodable_bitstream_raises_external_codec_error():
    be = X265Backend("anchor_hevc", setting_prefix="codec.anchor_hevc")
    with pytest.raises(ExternalCodecError, match="anchor_hevc"):
        be.decode(b"\x00\x00\x01 this is not HEVC" * 4, (1, 32, 32), 10)
    good = be.encode(smooth_frames(2, 32, 32, 10), 10, "qp", 30)
    with pytest.raises(ExternalCodecError, match="expected"):  # asks for 3 frames, stream holds 2
        be.decode(good, (3, 32, 32), 10)


def test_hanging_process_is_killed_by_the_timeout(tmp_path):
    fake = executable_script(
        tmp_path / "ffmpeg",
        "import sys, time\nif '-encoders' not in sys.argv and '-decoders' not in sys.argv:\n    time.sleep(30)\n",
    )
    be = X265Backend("anchor_hevc", setting_prefix="codec.anchor_hevc", ffmpeg=str(fake), timeout_s=1)
    with pytest.raises(ExternalCodecError, match="did not finish within 1 s"):
        be.encode(smooth_frames(1, 16, 16, 10), 10, "qp", 30)


# ---------------------------------------------------------------------------- VTM


@pytest.mark.parametrize("as_420", [False, True])
def test_vtm_command_line_and_round_trip_with_fake_binaries(tmp_path, as_420, codec_from_yaml, real_features):
    enc, dec, log = fake_vtm(tmp_path, as_420)
    cfg = tmp_path / "encoder_intra_vtm.cfg"
    cfg.write_text("IntraPeriod : 1\n")
    codec = codec_from_yaml(
        "anchor_vtm", rates=[37], backend__encoder_app=str(enc), backend__decoder_app=str(dec), backend__cfg=str(cfg)
    )
    feats = real_features(channels=16)
    payload = codec.encode(feats, codec.rates[0])
    call = json.loads(log.read_text())
    opts = call["opts"]
    assert call["argv"][:2] == ["-c", str(cfg.resolve())]
    assert opts["QP"] == "37" and opts["IntraPeriod"] == "1"
    assert opts["InternalBitDepth"] == "10" and opts["InputBitDepth"] == "10" and opts["OutputBitDepth"] == "10"
    assert opts["InputChromaFormat"] == "400" and opts["ChromaFormatIDC"] == "400"
    assert opts["FramesToBeEncoded"] == "1"
    assert codec.backend.last_encode_s > 0
    out = codec.decode(payload)
    step = (float(max(v.max() for v in feats.values())) - float(min(v.min() for v in feats.values()))) / 1023
    for k in LEVELS:  # the fake is lossless: only quantisation error is left
        assert out[k].shape == feats[k].shape
        assert float((out[k] - feats[k]).abs().max()) <= step / 2 * 1.001


def test_wrong_vtm_path_names_the_setting(tmp_path, codec_from_yaml):
    enc, dec, _ = fake_vtm(tmp_path)
    with pytest.raises(MissingDependencyError, match=r"codec\.anchor_vtm\.backend\.encoder_app"):
        codec_from_yaml(
            "anchor_vtm", backend__encoder_app=str(tmp_path / "nope" / "EncoderApp"), backend__decoder_app=str(dec)
        )
    with pytest.raises(MissingDependencyError, match=r"codec\.anchor_vtm\.backend\.encoder_app"):
        codec_from_yaml("anchor_vtm", backend__decoder_app=str(dec))
    with pytest.raises(MissingDependencyError, match=r"codec\.anchor_vtm\.backend\.decoder_app"):
        codec_from_yaml(
            "anchor_vtm", backend__encoder_app=str(enc), backend__decoder_app=str(tmp_path / "DecoderAppXX")
        )
    with pytest.raises(ConfigError, match=r"codec\.anchor_vtm\.backend\.cfg"):
        codec_from_yaml(
            "anchor_vtm",
            backend__encoder_app=str(enc),
            backend__decoder_app=str(dec),
            backend__cfg=str(tmp_path / "x.cfg"),
        )


def test_vtm_decoder_failure_is_a_payload_error(tmp_path, codec_from_yaml, real_features):
    from vcmbench.errors import PayloadError

    enc, dec, _ = fake_vtm(tmp_path)
    codec = codec_from_yaml("anchor_vtm", rates=[37], backend__encoder_app=str(enc), backend__decoder_app=str(dec))
    payload = bytearray(codec.encode(real_features(channels=4), codec.rates[0]))
    payload[40:44] = b"JUNK"  # the fake bitstream's magic: its decoder fails
    with pytest.raises(PayloadError, match=r"anchor_vtm.*DecoderApp.*not a bitstream"):
        codec.decode(bytes(payload))


def test_each_backend_class_carries_the_family_id_its_payloads_write():
    """The family id is a byte of frame payloads: a back-end class keeps it, and a family's back-ends
    share it (their streams decode with each other's decoders)."""
    ids = {
        VvencBackend: 1,
        VtmBackend: 1,
        X265Backend: 2,
        X265CliBackend: 2,
        AomBackend: 3,
        SvtAv1Backend: 3,
        Ffv1Backend: 4,
        PngBackend: 5,
        JpegBackend: 6,
    }
    assert {cls: cls.family_id for cls in ids} == ids
    assert all(issubclass(cls, ExternalBackend) for cls in ids)
    with pytest.raises(TypeError, match="4 bits"):
        type("Wide", (VvencBackend,), {"family_id": 16})


def test_backend_defaults_when_a_yaml_leaves_a_setting_null():
    """`timeout_s: null` and `preset: null` in a back-end node mean the class's default."""
    assert backend_for(VvencBackend, timeout_s=None, preset=None).describe() == "libvvenc preset faster"
    assert backend_for(VvencBackend, timeout_s=None).timeout_s == 300.0
