#!/usr/bin/env sh
# Export a static-graph training checkpoint as a model folder the runtime loads as it is.
#
#   sh scripts/export_static.sh                            Paddle inference model
#   sh scripts/export_static.sh --export_type onnx         ONNX (or all for both)
#
# Overrides: BACKBONE, EMBEDDING_SIZE, CHECKPOINT_DIR, OUTPUT_DIR, CHECK_DATA (real faces for the
# self-check: a verification .bin or a folder of aligned faces); extra arguments go to
# tools/export.py.
set -eu
cd "$(dirname "$0")/.."

exec python tools/export.py \
    --is_static True \
    --export_type paddle \
    --backbone "${BACKBONE:-FresResNet50}" \
    --embedding_size "${EMBEDDING_SIZE:-512}" \
    --checkpoint_dir "${CHECKPOINT_DIR:-output/ms1mv3_r50_static}" \
    --output_dir "${OUTPUT_DIR:-exported/FresResNet50}" \
    ${CHECK_DATA:+--check_data "$CHECK_DATA"} \
    "$@"
