#!/usr/bin/env bash
# The GPU session's checks, as one short script for a lent CUDA machine (docs/PERFORMANCE.md, "GPU").
#
#   [WHEELS=DIR] [SPINE256=ZIP] [DEMO32=ZIP [CLASSIFIER=PKL]] bash bench/gpu_check.sh OUTDIR
#
# 1. machine facts (nvidia-smi, torch), 2. build both CUDA plugins for this card (tools/check_cuda_build.py),
# 3. the GPU tests (CUDA plugin parity, fp16 blocks), 4. bench/ops.py --device cuda, forward and --backward,
# 5. training speed from train.py's own tick lines: --cfg=spine at 256x256 and, given DEMO32, --cfg=demo at 32x32.
# WHEELS holds wheels of packages the machine lacks (pydicom, opacus): see bench/gpu_env.sh.
# SPINE256 / DEMO32 are labelled datasets at 256x256 / 32x32 (any content: only the speed is read); without
# SPINE256 the phantom makes one. CLASSIFIER (a 32x32 abnormality classifier) adds the clinical loss, with
# --clinical-augment=1, to the 32x32 run: a check that SpineGAN's generator term runs on the GPU.
# Each step has its own time limit and log under OUTDIR (OUTDIR/summary.txt: each step's exit status and
# seconds); a failed step does not stop the rest.
set -u
out=${1:?usage: [WHEELS=DIR] [SPINE256=ZIP] [DEMO32=ZIP [CLASSIFIER=PKL]] gpu_check.sh OUTDIR}
spine256=${SPINE256:-}
mkdir -p "$out"
export MAX_JOBS=${MAX_JOBS:-16}
# shellcheck source=bench/gpu_env.sh
. "$(dirname "$0")/gpu_env.sh"

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to OUTDIR/NAME.txt, print its tail and status
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" >"$out/$name.txt" 2>&1
    local rc=$?
    echo "== $name: exit $rc, $((SECONDS - start)) s" | tee -a "$out/summary.txt"
    tail -n 25 "$out/$name.txt"
}

step machine 30 bash -c "nvidia-smi; $py -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'; nvcc --version | tail -2"
step build 200 $py tools/check_cuda_build.py
step gpu_tests 120 $py -m pytest -q -p no:cacheprovider -m gpu tests/torch_utils tests/training
step ops 90 $py bench/ops.py --device cuda
step ops_backward 120 $py bench/ops.py --device cuda --backward

if [ -z "$spine256" ]; then
    spine256=/tmp/spine256.zip
    $py -m spine.phantom --outdir /tmp/phantom256 --num-train 256 --num-test 0 --size 256 --workers 8 >/dev/null &&
        $py -m spine.data.dataset_tool --source /tmp/phantom256 --dest "$spine256" --resolution 256 --labels abnormality \
            --workers 8 >/dev/null
fi
step train_spine256 150 $py train.py --outdir /tmp/runs256 --data="$spine256" --cfg=spine --cond=1 --kimg=3 \
    --kimg-per-tick=1 --snap=1000 --metrics=none
if [ -n "${DEMO32:-}" ]; then
    step train_demo32 45 $py train.py --outdir /tmp/runs32 --data="$DEMO32" --cfg=demo --cond=1 --kimg=4 \
        --snap=1000 ${CLASSIFIER:+--clinical-loss="$CLASSIFIER" --clinical-weight=0.1 --clinical-augment=1}
fi
