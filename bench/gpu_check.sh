#!/usr/bin/env bash
# The GPU session's checks as one prepared run of at most BUDGET seconds (default 540: 9 minutes) on a lent CUDA
# machine (docs/PERFORMANCE.md, "GPU"; issue #15).
#
#   [WHEELS=DIR] [BENCH=EXPDIR] [BUDGET=540] [DRY=1] bash bench/gpu_check.sh OUTDIR
#
#  1. machine facts (nvidia-smi, torch, nvcc)            5. the same with --cuda-graphs=1 (targets: 5 s/kimg, 6 GB)
#  2. both CUDA plugins built for this card              6. --cfg=demo-gpu 32x32 (batch 64)
#  3. the GPU tests (plugin parity, no-sync iteration,   7. the same with --cuda-graphs=1 (target: 1.0 s/kimg)
#     graphed phases = eager, device-side labels, ...)   8. the benchmark's two generators, side by side, for
#  4. --cfg=spine 256x256 at batch 16 (the paper's)         the time left (bench/gpu_benchmark.py train)
#
# Speed runs 4-7 print their steady sec/kimg and peak GPU memory (bench/steady_speed.py: ticks after the first two).
# The graphed runs are longer: each phase is captured after 3 eager calls, the lazy R1 one (every 16th iteration)
# at iteration 48.
# Their datasets are phantom radiographs made here (content does not matter for speed). Step 8 needs BENCH, an
# experiment folder made on a CPU by `python bench/gpu_benchmark.py prepare --outdir EXPDIR` (carry its data/train
# and classifier folders); it leaves OUTDIR/bench/<variant>/ with the last network snapshot and the log, for
# `gpu_benchmark.py finish` on the CPU (synthesis, metrics, downstream, the skill ratio).
# Each step has its own time limit and log under OUTDIR (OUTDIR/summary.txt: each step's exit status and seconds;
# the figures); a failed step does not stop the rest. WHEELS: see bench/gpu_env.sh.
# DRY=1 checks the script end to end on a CPU in a few minutes: reference ops, no plugin build, 32x32 instead of
# 256x256, the demo network in the spine steps, 3 iterations per run, a tiny benchmark prepared on the spot (the
# figures mean nothing).
set -u
out=${1:?usage: [WHEELS=DIR] [BENCH=EXPDIR] [BUDGET=540] [DRY=1] gpu_check.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
budget=${BUDGET:-540}
dry=${DRY:-0}
export MAX_JOBS=${MAX_JOBS:-16}
# shellcheck source=bench/gpu_env.sh
. "$(dirname "$0")/gpu_env.sh"
scratch=$(mktemp -d /tmp/gpu_check.XXXXXX)

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to OUTDIR/NAME.txt, print its tail and status
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" >"$out/$name.txt" 2>&1
    local rc=$?
    echo "== $name: exit $rc, $((SECONDS - start)) s" | tee -a "$out/summary.txt"
    tail -n 15 "$out/$name.txt"
}

speed() {  # speed NAME SECONDS TRAIN.PY-OPTIONS...: a short run in its own folder, then its steady figures
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" $py train.py --outdir "$scratch/$name" --cond=1 --snap=1000 --metrics=none "$@"
    local run
    run=$(ls -d "$scratch/$name"/*/ 2>/dev/null | tail -n 1)
    $py bench/steady_speed.py "${run:-$scratch/$name}" | sed "s|^$scratch/[^ ]*:|$name:|" | tee -a "$out/summary.txt"
}

phantom_zip() {  # phantom_zip COUNT RESOLUTION ZIP: labelled phantom radiographs (drawn at >= 128 px) at RESOLUTION
    local size=$(($2 > 128 ? $2 : 128))
    $py -m spine.phantom --outdir "$3.src" --num-train "$1" --num-test 0 --size "$size" --workers 8 \
        >/dev/null && $py -m spine.data.dataset_tool --source "$3.src" --dest "$3" --resolution "$2" \
        --labels abnormality --workers 8 >/dev/null
}

if [ "$dry" = 1 ]; then
    export SPINEGAN_OPS_IMPL=ref
    # The spine network does not start within minutes on a busy 2-core CPU: its steps run the demo preset here.
    res=32 limit=150 demo_limit=150 spine_cfg=demo
    spine_kimg=(--kimg-per-tick=0.001) demo_kimg=(--kimg-per-tick=0.001)  # a tick per iteration
    graphs=""  # no CUDA: the graphed steps run eagerly (their figures mean nothing, as all figures here)
    bench=${BENCH:-$scratch/bench}
    $py bench/gpu_benchmark.py prepare --outdir "$bench" --tiny >"$out/bench_prepare.txt" 2>&1
    step machine 30 $py -c 'import torch; print(torch.__version__)'
else
    res=256 limit=100 demo_limit=60 spine_cfg=spine
    spine_kimg=(--kimg=1 --kimg-per-tick=0.25) demo_kimg=(--kimg=3 --kimg-per-tick=0.5)
    graphs="--cuda-graphs=1"
    bench=${BENCH:-}
    step machine 30 bash -c "nvidia-smi; $py -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'; nvcc --version | tail -2"
    step build 150 $py tools/check_cuda_build.py
fi
step gpu_tests 150 $py -m pytest -q -p no:cacheprovider -m gpu tests/torch_utils tests/training

phantom_zip 64 "$res" "$scratch/spine$res.zip"
phantom_zip 256 32 "$scratch/demo32.zip"
for mode in eager graphs; do  # DRY=1: 3 iterations, a tick each (the first two ticks are start-up)
    flag=$([ "$mode" = graphs ] && echo "$graphs")
    more=$([ "$mode" = graphs ] && [ "$dry" != 1 ] && echo "--kimg=2")  # past the lazy phases' captures
    kimg=$([ "$dry" = 1 ] && echo "--kimg=48e-3")
    # shellcheck disable=SC2086  # $flag, $more and $kimg are empty or one option each
    speed "spine${res}_b16_$mode" "$limit" --data="$scratch/spine$res.zip" --cfg=$spine_cfg --batch=16 \
        --workers=4 "${spine_kimg[@]}" $more $kimg $flag
done
for mode in eager graphs; do
    flag=$([ "$mode" = graphs ] && echo "$graphs")
    more=$([ "$mode" = graphs ] && [ "$dry" != 1 ] && echo "--kimg=6")
    kimg=$([ "$dry" = 1 ] && echo "--kimg=192e-3")
    # shellcheck disable=SC2086
    speed "demo32_b64_$mode" "$demo_limit" --data="$scratch/demo32.zip" --cfg=demo-gpu "${demo_kimg[@]}" $more \
        $kimg $flag
done

left=$((budget - SECONDS - 20))  # 20 s for copying the snapshots
if [ -z "$bench" ]; then
    echo "== benchmark: skipped (no BENCH experiment folder)" | tee -a "$out/summary.txt"
elif [ "$left" -lt 30 ]; then
    echo "== benchmark: skipped ($left s left)" | tee -a "$out/summary.txt"
else
    tiny=$([ "$dry" = 1 ] && echo --tiny)
    # shellcheck disable=SC2086  # $tiny is empty or one flag
    step benchmark_train $((left + 15)) $py bench/gpu_benchmark.py train --outdir "$bench" --snapshots "$out/bench" \
        --runs "$scratch/bench_runs" --seconds "$left" $tiny
    if [ "$dry" = 1 ]; then  # on a GPU machine this step runs on the CPU afterwards
        step benchmark_finish 300 $py bench/gpu_benchmark.py finish --outdir "$bench" --snapshots "$out/bench" $tiny
    fi
fi
echo "== total: $SECONDS s of $budget" | tee -a "$out/summary.txt"
rm -rf "$scratch"
