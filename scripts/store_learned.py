"""Store a trained chain of learned-codec rate points compactly: the top one with 7-bit weights, each
lower one as its change from the one it was fine-tuned from (its parent, in the same folder).

    .venv/bin/python scripts/store_learned.py results/train-ci learned_interleaved vcmbench/checkpoints/learned_interleaved

Reads <src>/<codec>-q<k>/q<k>.pt and .json (as `vcmbench train` wrote them, k = 6 .. 1, each
fine-tuned from k+1: scripts/train_learned_ci.sh), writes <dest>/q<k>.pt and q<k>.json. The json
keeps the training record and gets the stored file's model id, size, parent, and its validation
figures re-measured from real range-coded bytes with the weights as stored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from vcmbench.codecs.learned.codec import load_checkpoint, save_checkpoint
from vcmbench.codecs.learned.features import feature_set
from vcmbench.train.codec import validate_bytes


def store(src: Path, codec: str, dest: Path, qualities: list[int]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("q*.pt"):
        old.unlink()
    parent = None
    for q in sorted(qualities, reverse=True):
        run = src / f"{codec}-q{q}"
        info = json.loads((run / f"q{q}.json").read_text())
        net, meta = load_checkpoint(run / f"q{q}.pt")
        net.train()  # finalize re-quantizes from these weights
        keep = {k: meta[k] for k in ("codec", "quality", "lambda", "front") if k in meta}
        stored = save_checkpoint(net, dest / f"q{q}.pt", meta["arch"], meta["net"], keep, parent)
        net.eval()
        cfg = OmegaConf.create(info["config"])
        fs = feature_set(cfg.model, cfg.val_set, cfg.features.get("cache_dir"), cfg.features.get("val_images"), False)
        v = validate_bytes(net, fs, cfg.get("val_limit"))
        info.update(
            {
                "model_id": stored["model_id"],
                "fingerprint": stored["fingerprint"],
                "checkpoint_bytes": stored["checkpoint_bytes"],
                "parent": stored["parent"],
                "storage": "transform weights at 7-bit precision per output channel (integer codes, lzma), as the "
                "change from the parent's when it has one; fp32 entropy-model parameters; "
                "zlib-compressed int32 CDF tables",
                "val_as_trained": info.get("val"),
                "val": {
                    **info.get("val", {}),
                    "bpp": v["bpp"],
                    "bytes_per_image": v["bytes_per_image"],
                    "mse_decoded": v["mse"],
                    "enc_s": v["enc_s"],
                    "dec_s": v["dec_s"],
                    "images": v["images"],
                    "weights": "as stored",
                },
            }
        )
        (dest / f"q{q}.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        print(
            f"{dest / f'q{q}.pt'}: {stored['checkpoint_bytes'] / 1e6:.2f} MB, model {stored['model_id']}, "
            f"parent {parent.name if parent else None}; val bpp {v['bpp']:.4f} (as trained "
            f"{info['val_as_trained'].get('bpp', float('nan')):.4f}), P2 MSE {v['mse']['p2']:.5f} (as trained "
            f"{info['val_as_trained'].get('mse_decoded', {}).get('p2', float('nan')):.5f})"
        )
        parent = dest / f"q{q}.pt"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("codec")
    ap.add_argument("dest", type=Path)
    ap.add_argument("--qualities", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    args = ap.parse_args(argv)
    store(args.src, args.codec, args.dest, args.qualities)
    return 0


if __name__ == "__main__":
    sys.exit(main())
