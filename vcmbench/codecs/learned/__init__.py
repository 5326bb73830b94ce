"""Learned multi-scale feature codecs: Kim et al. 2024's interleaved fusion and
encoding (`codec=learned_interleaved`) and the fuse-then-compress ablation baseline
(`codec=learned_cascade`), CompressAI entropy models, trained by `vcmbench train`.

- `models`: the networks (`InterleavedNet`, `CascadeNet`, shared decoder and hyperprior);
- `codec`: `LearnedCodec` (one checkpoint per quality), checkpoint files, payload coding;
- `train`: `train_codec(cfg, out_dir)`, the Hydra-configured training loop (conf/train.yaml);
- `features`: the on-disk cache of a front's features for training.

Submodules are imported on use: `import vcmbench.codecs.learned` stays light.
"""
