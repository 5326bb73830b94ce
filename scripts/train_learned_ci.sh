#!/bin/bash
# Learned-codec checkpoints on ci_frcnn features: highest quality from scratch, the others fine-tuned from it.
cd "$(dirname "$0")/.."
for arch in learned_interleaved learned_cascade; do
  .venv/bin/vcmbench train codec=$arch quality=4 threads=2 progress=false copy_to=vcmbench/checkpoints/$arch \
      steps=1500 max_minutes=12 val_every=500 || exit 1
  for q in 3 2 1; do
    .venv/bin/vcmbench train codec=$arch quality=$q threads=2 progress=false copy_to=vcmbench/checkpoints/$arch \
        init_from=vcmbench/checkpoints/$arch/q4.pt optimizer.lr=5e-4 steps=600 max_minutes=5 val_every=300 || exit 1
  done
done
echo ALL DONE
