#!/usr/bin/env sh
# Shared by train_static.sh and train_dynamic.sh: `launch_train.sh True|False [args...]`.
#
#   sh scripts/train_static.sh                        8 GPUs, ArcFace R50 on MS1M-v3
#   DEVICE=cpu NPROC=2 sh scripts/train_static.sh     2 CPU processes, tiny synthetic config
#
# Overrides: CONFIG (config file), GPUS (e.g. 0,1,2,3), NPROC (CPU processes), LOG_DIR;
# extra arguments are passed to tools/train.py (e.g. --max_steps 20 --output runs/x).
set -eu
IS_STATIC="$1"
shift
cd "$(dirname "$0")/.."

DEVICE="${DEVICE:-gpu}"
LOG_DIR="${LOG_DIR:-log}"

if [ "$DEVICE" = "cpu" ]; then
    # gloo over CPU processes (--gpus/--devices do not apply on CPU)
    exec python -m paddle.distributed.launch --nproc_per_node "${NPROC:-2}" --log_dir "$LOG_DIR" \
        tools/train.py \
        --config_file "${CONFIG:-configs/tiny_cpu.py}" \
        --is_static "$IS_STATIC" \
        "$@"
fi

# the config holds the anchor's settings; any key can follow as --key value
exec python -m paddle.distributed.launch --gpus="${GPUS:-0,1,2,3,4,5,6,7}" --log_dir "$LOG_DIR" \
    tools/train.py \
    --config_file "${CONFIG:-configs/ms1mv3_r50.py}" \
    --is_static "$IS_STATIC" \
    "$@"
