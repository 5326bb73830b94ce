#!/bin/bash
# The committed learned-codec checkpoints on ci_frcnn features, both codecs, six rate points each:
# the highest quality (q6) from scratch, then each lower one fine-tuned from the one above it
# (q6 -> q5 -> ... -> q1), with the settings of conf/codec/learned_{interleaved,cascade}.yaml.
#
# Resumable: every `vcmbench train` keeps train_state.pt in its run folder and picks up where it
# stopped; a quality whose q{k}.pt is already in its run folder is skipped. So an interrupted
# schedule is finished by running this script again (the two codecs run side by side, one
# thread each; THREADS=2 SERIAL=1 runs them one after the other instead).
#
#   bash scripts/train_learned_ci.sh             # train into results/train-ci/<codec>-q<k>
#   COPY=1 bash scripts/train_learned_ci.sh      # then store them in vcmbench/checkpoints/<codec>
#                                                # (scripts/store_learned.py: about 3 MB per fine-tuned point)
#   CODECS=learned_interleaved THREADS=2 bash scripts/train_learned_ci.sh   # one codec, both cores
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-results/train-ci}
STEPS_BASE=${STEPS_BASE:-3200}
STEPS_FT=${STEPS_FT:-300}
THREADS=${THREADS:-1}
VCMBENCH=${VCMBENCH:-.venv/bin/vcmbench}
CODECS=${CODECS:-learned_interleaved learned_cascade}

train_chain() {
  local codec=$1 prev=""
  for q in 6 5 4 3 2 1; do
    local dir=$OUT/$codec-q$q
    if [ ! -f "$dir/q$q.pt" ]; then
      local args=(codec="$codec" quality=$q threads="$THREADS" progress=false hydra.run.dir="$dir"
                  "loss.level_weights=[0.6,0.2,0.1,0.05,0.05]")
      if [ -z "$prev" ]; then
        args+=(steps="$STEPS_BASE" val_every=400)
      else
        args+=(init_from="$prev" optimizer.lr=5e-4 steps="$STEPS_FT" val_every=250)
      fi
      "$VCMBENCH" train "${args[@]}" || return 1
    fi
    prev=$dir/q$q.pt
  done
}

if [ -n "$SERIAL" ]; then
  for codec in $CODECS; do train_chain "$codec" || exit 1; done
else
  pids=()
  for codec in $CODECS; do
    train_chain "$codec" > "$OUT.$codec.log" 2>&1 &
    pids+=($!)
  done
  i=0
  for codec in $CODECS; do
    wait "${pids[$i]}" || { echo "$codec failed: see $OUT.$codec.log"; exit 1; }
    i=$((i + 1))
  done
fi

if [ -n "$COPY" ]; then  # q6 with 7-bit weights, each lower quality as its change from the one above it
  for codec in $CODECS; do
    rm -f vcmbench/checkpoints/$codec/q*.pt vcmbench/checkpoints/$codec/q*.json
    .venv/bin/python scripts/store_learned.py "$OUT" $codec vcmbench/checkpoints/$codec || exit 1
  done
fi
echo ALL DONE
