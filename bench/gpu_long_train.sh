#!/usr/bin/env bash
# Train the benchmark's generators far longer than the CPU allows, on a lent GPU, for a fixed wall time.
#
#   [WHEELS=DIR] bash bench/gpu_long_train.sh OUTDIR TRAIN_ZIP CLASSIFIER_PKL SECONDS
#
# Runs, side by side on the one GPU (each process is launch-bound at 32x32, so they share it well), the
# experiment's train.py command (spine/experiment.py `train_command`: --cond=1 --cfg=demo --seed=0
# --metrics=none) for three variants: stylegan2-ada (no clinical loss), spinegan (clinical weight 0.1) and
# spinegan-aug (the same with --clinical-augment=1). --kimg is set far beyond what SECONDS allow; the runs are
# stopped at SECONDS and keep their snapshots (every 10 kimg, written atomically). OUTDIR/<variant>.tar holds
# each run directory with its log, stats, fakes grids and its last three network snapshots; the rest of the
# experiment (synthesis, metrics, downstream) then runs on the CPU from those snapshots (docs/RESULTS.md).
set -u
out=${1:?usage: [WHEELS=DIR] gpu_long_train.sh OUTDIR TRAIN_ZIP CLASSIFIER_PKL SECONDS}
data=${2:?TRAIN_ZIP}
classifier=${3:?CLASSIFIER_PKL}
seconds=${4:?SECONDS}
mkdir -p "$out"
# shellcheck source=bench/gpu_env.sh
. "$(dirname "$0")/gpu_env.sh"

common=(--data="$data" --cond=1 --cfg=demo --kimg=5000 --snap=10 --seed=0 --metrics=none)
clinical=(--clinical-loss="$classifier" --clinical-weight=0.1)
declare -A extra=(
    [stylegan2-ada]=""
    [spinegan]="${clinical[*]}"
    [spinegan-aug]="${clinical[*]} --clinical-augment=1"
)
for variant in "${!extra[@]}"; do
    # shellcheck disable=SC2086  # the extra options are meant to split into words
    timeout "$seconds" $py train.py --outdir "/tmp/long/$variant" "${common[@]}" ${extra[$variant]} \
        >"$out/$variant.log" 2>&1 &
done
wait
for variant in "${!extra[@]}"; do
    run=$(ls -d /tmp/long/"$variant"/*/ | tail -n 1)
    keep=$(cd "$run" && ls network-snapshot-*.pkl | tail -n 3)
    grids=$(cd "$run" && ls fakes*.png | tail -n 2)
    # shellcheck disable=SC2086
    tar -C "$run" -cf "$out/$variant.tar" log.txt stats.jsonl training_options.json reals.png $grids $keep
    echo "== $variant: $(grep -c '^tick' "$run/log.txt") ticks; $(grep '^tick' "$run/log.txt" | tail -n 1)"
done
