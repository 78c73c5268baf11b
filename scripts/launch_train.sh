#!/usr/bin/env sh
# Shared by train_static.sh and train_dynamic.sh: `launch_train.sh True|False [args...]`
# (True: static graph).
#
#   sh scripts/train_dynamic.sh                       8 GPUs, ArcFace R50 on MS1M-v3
#   DEVICE=cpu NPROC=2 sh scripts/train_static.sh     2 CPU processes, tiny synthetic config
#
# Overrides: CONFIG (config file), GPUS (e.g. 0,1,2,3), NPROC (CPU processes), LOG_DIR (the
# launcher's per-rank logs; default <output>/launch_log), LAUNCH_LOG_LEVEL (the launcher's own
# messages; default WARNING); extra arguments are passed to tools/train.py (e.g.
# --max_steps 20 --output runs/x). Relative paths are relative to the repository.
set -eu
IS_STATIC="$1"
shift
cd "$(dirname "$0")/.."

DEVICE="${DEVICE:-gpu}"
if [ "$DEVICE" = "cpu" ]; then
    CONFIG="${CONFIG:-configs/tiny_cpu.py}"
else
    CONFIG="${CONFIG:-configs/ms1mv3_r50.py}"
fi

# Paddle's C++ INFO and WARNING lines (tcp store; dozens from converting the static program)
# and its import-time ccache warning (about building C++ extensions, which training never does)
# are noise in a training log; C++ errors and Python warnings still show
export GLOG_minloglevel="${GLOG_minloglevel:-2}"
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore:No ccache found:UserWarning}"

# resolve the config once before launching: a bad flag or path (a missing data folder, an
# output that cannot be written) is one line here rather than the launcher's report of a failed
# rank, and the run's output folder (which holds the launcher's logs too) is known
OUTPUT="$(python -m arcface_paddle.config output --config_file "$CONFIG" --is_static "$IS_STATIC" "$@")"
LOG_DIR="${LOG_DIR:-$OUTPUT/launch_log}"

if [ "$DEVICE" = "cpu" ]; then
    # gloo over CPU processes (--gpus/--devices do not apply on CPU)
    exec python -m paddle.distributed.launch --nproc_per_node "${NPROC:-2}" \
        --log_dir "$LOG_DIR" --log_level "${LAUNCH_LOG_LEVEL:-WARNING}" \
        tools/train.py --config_file "$CONFIG" --is_static "$IS_STATIC" "$@"
fi

# the config holds the anchor's settings; any key can follow as --key value
exec python -m paddle.distributed.launch --gpus="${GPUS:-0,1,2,3,4,5,6,7}" \
    --log_dir "$LOG_DIR" --log_level "${LAUNCH_LOG_LEVEL:-WARNING}" \
    tools/train.py --config_file "$CONFIG" --is_static "$IS_STATIC" "$@"
