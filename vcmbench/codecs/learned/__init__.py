"""Learned multi-scale feature codecs: Kim et al. 2024's interleaved fusion and
encoding (`codec=learned_interleaved`) and the fuse-then-compress ablation baseline
(`codec=learned_cascade`), CompressAI entropy models, trained by `vcmbench train`.

- `models`: the networks (`InterleavedNet`, `CascadeNet`, shared decoder and hyperprior);
- `codec`: `LearnedCodec` (one checkpoint per quality), the payload container;
- `checkpoint`: the checkpoint files (format, fingerprints, fine-tune parents);
- `entropy`: the range coding of the latents with the serial context model;
- `trained_on`: what a checkpoint was trained for (the run's domain check);
- `train`: `train_codec(cfg, out_dir)`, the Hydra-configured training loop (conf/train.yaml);
- `features`: the on-disk cache of a front's features for training.

Submodules are imported on use: `import vcmbench.codecs.learned` stays light.
"""
