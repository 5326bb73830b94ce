"""How far each libvvenc preset is from VTM, the encoder the MPEG anchor numbers come from.

    python benchmarks/anchor_vs_vtm.py --encoder-app /opt/VTM/bin/EncoderAppStatic \\
        --decoder-app /opt/VTM/bin/DecoderAppStatic --cfg /opt/VTM/cfg/encoder_intra_vtm.cfg
    python benchmarks/anchor_vs_vtm.py ... --images 10 --presets faster fast medium slow
    python benchmarks/anchor_vs_vtm.py --reference medium --presets faster   # no VTM: preset vs preset

One sweep per encoder, each a normal run folder under --out (so an interrupted benchmark resumes
and a finished one is only re-read): `codec=anchor_vtm` with your VTM binaries, and
`codec=anchor_vvc codec.anchor_vvc.backend.preset=P` for each preset P. Every sweep codes the
same images with the same front, quantiser, tiling and QPs (EE1.2's 35..45 unless --qps), one
worker (uncontended encode times), so the encoder is the only difference. Printed, per preset:

* BD-rate against the reference on feature PSNR (fid_psnr, the decoded P2..P5 vs the front's,
  averaged over images) and on the task metric (mAP): the bits the preset costs at equal quality;
* the reference's encode seconds per image over the preset's (summed over the QPs): how many
  times faster the preset is.

The README's section on anchors quotes this table for VTM 12.0 on 2 default scenes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
EE12_QPS = (35, 37, 39, 41, 43, 45)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder-app", help="VTM's EncoderApp (needed unless --reference is a preset)")
    ap.add_argument("--decoder-app", help="VTM's DecoderApp")
    ap.add_argument("--cfg", help="VTM's cfg/encoder_intra_vtm.cfg (recommended)")
    ap.add_argument(
        "--reference", default="vtm", help="the curve every preset is compared to: vtm (default) or a libvvenc preset"
    )
    ap.add_argument(
        "--presets",
        nargs="+",
        default=["faster", "fast", "medium"],
        help="libvvenc presets to measure (faster fast medium slow slower)",
    )
    ap.add_argument("--images", type=int, default=2, help="first N images of the dataset (default 2)")
    ap.add_argument("--qps", type=int, nargs="+", default=list(EE12_QPS))
    ap.add_argument("--dataset", default="synthetic_val")
    ap.add_argument("--model", default="ci_frcnn")
    ap.add_argument(
        "--out",
        type=Path,
        default=REPO / "results" / "anchor_vs_vtm",
        help="folder of the per-encoder run folders (default results/anchor_vs_vtm)",
    )
    ap.add_argument("--overrides", nargs="*", default=[], help="more Hydra overrides for every sweep")
    return ap.parse_args(argv)


def encoder_overrides(encoder: str, args: argparse.Namespace) -> list[str]:
    """The Hydra overrides that select one encoder: VTM, or libvvenc at a preset."""
    qps = f"[{','.join(str(q) for q in args.qps)}]"
    if encoder == "vtm":
        paths = {"encoder_app": args.encoder_app, "decoder_app": args.decoder_app, "cfg": args.cfg}
        return [
            "codec=anchor_vtm",
            f"codec.anchor_vtm.rates={qps}",
            *(f"codec.anchor_vtm.backend.{k}={v}" for k, v in paths.items() if v),
        ]
    return ["codec=anchor_vvc", f"codec.anchor_vvc.rates={qps}", f"codec.anchor_vvc.backend.preset={encoder}"]


def sweep(encoder: str, args: argparse.Namespace) -> pd.DataFrame:
    """The points of one encoder's sweep (run, resumed or re-read)."""
    from vcmbench.config import compose_config
    from vcmbench.run import run_sweep

    cfg = compose_config(
        "config",
        [
            f"dataset={args.dataset}",
            f"model={args.model}",
            f"dataset.max_images={args.images}",
            "sweep.workers=1",
            "sweep.progress=false",
            "report=false",
            "fidelity=true",
            *encoder_overrides(encoder, args),
            *args.overrides,
        ],
    )
    return run_sweep(cfg, args.out / encoder)


def compare(points: dict[str, pd.DataFrame], reference: str) -> tuple[pd.DataFrame, list[str]]:
    """The table (one row per encoder) and a note for each BD-rate that could not be taken."""
    from vcmbench.analysis import bd_row

    ref = points[reference]
    ref_enc = float(ref["enc_s"].sum())
    rows, notes = [], []
    for encoder, pts in points.items():
        name = str(pts["encoder"].iloc[0]) if "encoder" in pts else encoder
        row = {"encoder": name}
        for metric, column in (("fid_psnr", "BD-rate feature PSNR %"), ("map", "BD-rate mAP %")):
            if encoder == reference:
                row[column] = "(reference)"
                continue
            bd = bd_row(ref, pts, encoder, reference, metric=metric)
            row[column] = f"{bd.bd_rate:+.2f}" if bd.ok else "–"
            if not bd.ok:
                notes.append(f"{name}, {column}: {bd.reason}")
        row["encode s/image (all QPs)"] = f"{float(pts['enc_s'].sum()):.3f}"
        row["reference time / this"] = f"{ref_enc / float(pts['enc_s'].sum()):.2f}"
        rows.append(row)
    return pd.DataFrame(rows), notes


def main(argv=None) -> int:
    args = parse_args(argv)
    from vcmbench.errors import VcmbenchError
    from vcmbench.tables import text_table

    encoders = [args.reference] + [p for p in args.presets if p != args.reference]
    if args.reference == "vtm" and not args.encoder_app:
        print(
            "anchor_vs_vtm: error: --encoder-app is not set: give VTM's EncoderApp (and --decoder-app), or "
            "compare presets with --reference PRESET",
            file=sys.stderr,
        )
        return 2
    try:
        points = {e: sweep(e, args) for e in encoders}
    except VcmbenchError as exc:
        print(f"anchor_vs_vtm: error: {exc}", file=sys.stderr)
        return 2
    table, notes = compare(points, args.reference)
    first = points[args.reference]
    print(
        f"{first['dataset'].iloc[0]} / {first['model'].iloc[0]}, {int(first['n_images'].iloc[0])} images, "
        f"QPs {' '.join(map(str, args.qps))}; reference: {table['encoder'].iloc[0]}"
    )
    print(text_table(table, "lrrrr"))
    for note in notes:
        print(f"– {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
