"""kMAC per pixel, the complexity figure MPEG's platform reports: counted by torch's FlopCounterMode
on the real code path."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.codecs.test_learned import _save_tiny
from vcmbench.codecs.learned.codec import LearnedCodec
from vcmbench.metrics.complexity import complexity_table, count_macs

pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore:.*far from that of the features")]


def test_a_convolution_counts_its_multiplies():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(1, 3, 16, 20)
    out, macs = count_macs(lambda: conv(x))
    assert out.shape == (1, 8, 16, 20)
    assert macs == 8 * 3 * 9 * 16 * 20  # every output sample: 3 x 3 x 3 multiply-accumulates


def test_learned_codecs_are_counted_external_ones_are_time_only(tmp_path, small_detector, codec_from_yaml):
    from tests.conftest import coco_mini_image_paths
    from vcmbench.datasets.images import read_rgb

    image = read_rgb(coco_mini_image_paths(1)[0])
    sample = SimpleNamespace(image=image, pixels=image.shape[1] * image.shape[2])
    learned = LearnedCodec("learned_interleaved", "interleaved", str(_save_tiny(tmp_path / "ck")), rates=[1])
    raw = codec_from_yaml("raw")
    table = complexity_table(small_detector, [learned, raw], sample).set_index("codec")

    _, front_macs = count_macs(lambda: small_detector.front(image))
    assert table.loc["raw", "kmac_front"] == pytest.approx(front_macs / sample.pixels / 1e3)
    assert table.loc["learned_interleaved", "kmac_front"] == table.loc["raw", "kmac_front"]
    assert table.kmac_back.gt(0).all()
    assert table.loc["learned_interleaved", ["kmac_enc", "kmac_dec"]].gt(0).all()
    assert table.loc["raw", ["kmac_enc", "kmac_dec"]].isna().all()  # not counted is not zero

    # the encoder's count is that of the network's own transforms on the padded features
    net, _ = learned.net(1)
    from vcmbench.codecs.learned.models import pad_levels
    from vcmbench.types import LEVELS

    front = small_detector.front(image)
    x, _ = pad_levels([front.features[k].unsqueeze(0) for k in LEVELS], net.total_stride)

    def transforms():
        with torch.no_grad():
            y = net.g_a(x)
            z = net.h_a(y)
            return net.hyper_params_exact(torch.round(z))

    _, expected = count_macs(transforms)
    assert table.loc["learned_interleaved", "kmac_enc"] == pytest.approx(expected / sample.pixels / 1e3)


def test_a_rerun_counts_nothing_again(tmp_path, monkeypatch):
    """complexity.csv keeps the counts per setup: a rerun with nothing to code runs no front."""
    from tests.assets import SMALL_NET, fast_run_cfg
    from vcmbench.run import run_sweep
    from vcmbench.vision.torchvision_split import TorchvisionSplit

    cfg = fast_run_cfg("codec=[raw,raw16]", *SMALL_NET)
    first = run_sweep(cfg, tmp_path)
    assert (tmp_path / "complexity.csv").is_file() and first.kmac_front.gt(0).all()
    calls = {"front": 0}
    real_front = TorchvisionSplit.front
    monkeypatch.setattr(
        TorchvisionSplit, "front", lambda s, i: calls.__setitem__("front", calls["front"] + 1) or real_front(s, i)
    )
    again = run_sweep(cfg, tmp_path)
    assert calls["front"] == 0
    assert again.kmac_front.tolist() == first.kmac_front.tolist()
