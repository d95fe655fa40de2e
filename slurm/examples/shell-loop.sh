#!/usr/bin/env bash
# The shell-loop style, for those who prefer it to bin/launch: one sbatch job per
# (condition, shard), the same shard files bin/launch writes, then bin/merge checks that
# nothing is missing and writes results.jsonl + results.h5.
#
#   MANIFEST=manifests/sakura-animal.jsonl DATA_ROOT=/data/SAKURA/data \
#   MODEL_PATH=/models/Qwen2-Audio-7B-Instruct slurm/examples/shell-loop.sh
set -euo pipefail
: "${MANIFEST:?set MANIFEST}" "${MODEL_PATH:?set MODEL_PATH}"
DATA_ROOT=${DATA_ROOT:-$(dirname "$MANIFEST")}
RUN=${RUN:-runs/loop}
MODEL=${MODEL:-qwen2-audio}
DATASET=${DATASET:-$(basename "$MANIFEST" .jsonl)}
MODE=${MODE:-reasoning}
SHARDS=${SHARDS:-4}
SBATCH_ARGS=${SBATCH_ARGS:---gres=gpu:1 --time=120}
CONDITIONS=${CONDITIONS:-clean mask-p20 mask-p40 mask-p60 mask-p80 noise-snr10 noise-snr0}

mkdir -p "$RUN/_logs"
LOG="--output=$RUN/_logs/%x-%j.out"
ids=()
for c in $CONDITIONS; do
  for ((k = 0; k < SHARDS; k++)); do
    # --run-dir: bin/infer writes the shard file where bin/launch would, so bin/merge checks it
    # shellcheck disable=SC2086
    ids+=("$(sbatch --parsable $SBATCH_ARGS "$LOG" --job-name="$MODEL-$c-$k" --wrap \
      "bin/infer --manifest $MANIFEST --data-root $DATA_ROOT --model $MODEL --model-path $MODEL_PATH \
       --mode $MODE --condition $c --shard $k/$SHARDS --run-dir $RUN --dataset $DATASET")")
  done
done
# merge once every job has ended; it refuses (exit 1) and lists what is missing if one failed
deps=$(IFS=:; echo "${ids[*]}")
# shellcheck disable=SC2086
sbatch --parsable $SBATCH_ARGS "$LOG" --dependency="afterany:$deps" --job-name=merge --wrap "bin/merge $RUN"
