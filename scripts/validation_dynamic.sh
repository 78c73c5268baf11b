#!/usr/bin/env sh
# Score a dynamic-graph training checkpoint on the verification sets (10-fold, with flip).
#
#   sh scripts/validation_dynamic.sh
#   CHECKPOINT_DIR=output/ms1mv3_r50/checkpoints/step_00002000 DATA_DIR=MS1M_v3 sh scripts/validation_dynamic.sh
#
# Overrides: BACKBONE, EMBEDDING_SIZE, CHECKPOINT_DIR, DATA_DIR, VAL_TARGETS, BATCH_SIZE; extra
# arguments go to tools/validation.py (e.g. --json results.json --plot roc/).
set -eu
cd "$(dirname "$0")/.."

exec python tools/validation.py \
    --is_static False \
    --backbone "${BACKBONE:-FresResNet50}" \
    --embedding_size "${EMBEDDING_SIZE:-512}" \
    --checkpoint_dir "${CHECKPOINT_DIR:-output/ms1mv3_r50}" \
    --data_dir "${DATA_DIR:-MS1M_v3}" \
    --val_targets "${VAL_TARGETS:-lfw,cfp_fp,agedb_30}" \
    --batch_size "${BATCH_SIZE:-128}" \
    "$@"
