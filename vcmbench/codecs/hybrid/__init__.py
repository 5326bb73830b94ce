"""The hybrid feature codec (FCTM-style): learned reduction, a VVC inner codec, learned restoration.

- `network`: the reduction and restoration networks (`HybridNet`);
- `packing`: the reduced tensor as 10-bit monochrome frames (and training's stand-in for it);
- `codec`: `HybridCodec`, its payload and its sequence mode;
- training: `vcmbench.train.hybrid` (`vcmbench train codec=hybrid_vvc`).
"""
