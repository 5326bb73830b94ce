"""`vcmbench run|report|regress|bdrate|train|train-detector`.

`run` (and the training commands) are Hydra apps: everything after the subcommand is
Hydra overrides (`vcmbench run codec=raw dataset.max_images=8`, `-m` for multirun).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

from vcmbench.errors import VcmbenchError


def _user_error(exc: BaseException) -> VcmbenchError | None:
    """Our error inside whatever wrapped it (Hydra's instantiate wraps target errors)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, VcmbenchError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _hydra_app(task: Callable, config_name: str, argv: list[str]) -> int:
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from vcmbench.config import conf_dir

    @hydra.main(config_path=str(conf_dir()), config_name=config_name, version_base="1.3")
    def app(cfg) -> None:
        try:
            task(cfg, HydraConfig.get().runtime.output_dir)
        except Exception as exc:
            user = _user_error(exc)
            if user is None:
                raise
            # A user error: its message is the whole story, no traceback.
            print(f"vcmbench {config_name}: error: {user}", file=sys.stderr)
            sys.exit(2)

    sys.argv = [f"vcmbench {config_name}", *argv]
    app()
    return 0


def _run(cfg, out_dir: str) -> None:
    from vcmbench.run import run_sweep

    points = run_sweep(cfg, out_dir)
    cols = [c for c in ("codec", "rate", "n_images", "n_failed", "bpp", "map", "ap50", "enc_s", "dec_s")
            if c in points.columns]
    print(points[cols].to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    print(f"points table: {out_dir}/points.csv")


def _bdrate(argv: list[str]) -> int:
    import argparse

    import pandas as pd

    from vcmbench.metrics.bd import compare

    ap = argparse.ArgumentParser(prog="vcmbench bdrate", description="BD-rate of TEST vs ANCHOR points tables")
    ap.add_argument("anchor")
    ap.add_argument("test")
    ap.add_argument("--anchor-codec", help="codec of ANCHOR.csv to use (default: its only codec)")
    ap.add_argument("--codec", nargs="*", help="codecs of TEST.csv to compare (default: all)")
    ap.add_argument("--method", choices=["pchip", "cubic"], default="pchip")
    ap.add_argument("--metric", default="map")
    args = ap.parse_args(argv)
    anchor, test = pd.read_csv(args.anchor), pd.read_csv(args.test)
    a_codecs = sorted(anchor.codec.unique())
    a_codec = args.anchor_codec or (a_codecs[0] if len(a_codecs) == 1 else None)
    if a_codec is None:
        raise VcmbenchError(f"{args.anchor} holds codecs {a_codecs}: choose one with --anchor-codec")
    a = anchor[anchor.codec == a_codec]
    rows = []
    for codec in args.codec or sorted(test.codec.unique()):
        t = test[test.codec == codec]
        r = compare(a, t, metric_col=args.metric, method=args.method)
        rows.append({"codec": codec, "anchor": a_codec, "bd_rate_%": r.bd_rate, f"bd_{args.metric}": r.bd_metric,
                     "overlap": f"{r.overlap_lo:.3f}..{r.overlap_hi:.3f}"})
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


COMMANDS = {
    "run": lambda argv: _hydra_app(_run, "config", argv),
    "bdrate": _bdrate,
}


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(f"usage: vcmbench {{{'|'.join(COMMANDS)}}} [args]\n"
              "  run     sweep codecs x rate points (Hydra overrides follow; -m for multirun)\n"
              "  bdrate  BD-rate table of two points tables")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        return COMMANDS[argv[0]](argv[1:]) or 0
    except VcmbenchError as exc:
        print(f"vcmbench {argv[0]}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
