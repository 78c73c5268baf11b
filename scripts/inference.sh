#!/usr/bin/env sh
# Embed faces with an exported model (writes embeddings.npy and sources.txt under --output).
#
#   sh scripts/inference.sh                                  Paddle model of export_*.sh
#   sh scripts/inference.sh --export_type onnx --onnx_file exported/FresResNet50/model.onnx
#   IMAGE_PATH=photos/ sh scripts/inference.sh --detect      raw photos, faces detected
#
# Overrides: MODEL_DIR, IMAGE_PATH; extra arguments go to tools/inference.py (--benchmark ...).
set -eu
cd "$(dirname "$0")/.."

MODEL_DIR="${MODEL_DIR:-exported/FresResNet50}"
exec python tools/inference.py \
    --export_type paddle \
    --model_file "$MODEL_DIR/inference.json" \
    --params_file "$MODEL_DIR/inference.pdiparams" \
    --image_path "${IMAGE_PATH:-../shared/demo/friends/query}" \
    "$@"
