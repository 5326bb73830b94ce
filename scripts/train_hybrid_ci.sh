#!/bin/bash
# The committed hybrid_vvc checkpoint (vcmbench/checkpoints/hybrid_vvc/hybrid.pt) on ci_frcnn features
# of synthetic scenes: one pair of networks (reduction + restoration) for every QP, trained through
# the calibrated noise stand-in of the VVC inner codec (vcmbench/train/hybrid.py), time-bounded on
# 2 CPU cores. Resumable: rerun the same command and it continues from train_state.pt.
#
#   bash scripts/train_hybrid_ci.sh            # train into results/train-ci/hybrid_vvc
#   COPY=1 bash scripts/train_hybrid_ci.sh     # and store it in vcmbench/checkpoints/hybrid_vvc
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-results/train-ci/hybrid_vvc}
VCMBENCH=${VCMBENCH:-.venv/bin/vcmbench}
args=(codec=hybrid_vvc threads="${THREADS:-2}" progress=false hydra.run.dir="$OUT"
      steps="${STEPS:-5000}" max_minutes="${MINUTES:-48}" batch_size=8 crop=64 optimizer.lr=2e-3
      "loss.level_weights=[0.6,0.2,0.1,0.05,0.05]" val_every=0 checkpoint_every=100)
if [ -n "$COPY" ]; then
  args+=(copy_to=vcmbench/checkpoints/hybrid_vvc)
fi
"$VCMBENCH" train "${args[@]}"
