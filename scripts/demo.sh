#!/bin/sh
# Quick-start demo: index the faces of the demo gallery, then detect, align and recognise the faces
# in the demo queries. Prints a table and writes drawn images to $OUT/drawn.
#   INSIGHTFACE_PADDLE_SHARED  the project's shared data folder; unset: ../shared beside the
#                              checkout when it exists (the rule the tests follow), else none
#   INSIGHTFACE_PADDLE_DEMO    demo folder with gallery/ (label.txt) and query/; unset:
#                              $SHARED/demo/friends when it exists, else the photos download once
#                              from the old project's repository into <model cache>/demo/friends
#   INSIGHTFACE_PADDLE_HOME    model cache; unset: $SHARED/models when it exists, else
#                              ~/.insightface_paddle (models download there on first use)
#   OUT                        output folder (default output/demo)
# Offline and missing something: one message names all of it and where local copies go.
set -e
cd "$(dirname "$0")/.."
SHARED=${INSIGHTFACE_PADDLE_SHARED:-}
if [ -z "$SHARED" ] && [ -d ../shared ]; then
    SHARED=../shared
fi
OUT=${OUT:-output/demo}
if [ -z "${INSIGHTFACE_PADDLE_HOME:-}" ] && [ -n "$SHARED" ] && [ -d "$SHARED/models" ]; then
    INSIGHTFACE_PADDLE_HOME="$SHARED/models"
    export INSIGHTFACE_PADDLE_HOME
fi

# photos, models and the keypoint model (made once if the cache lacks it): found, fetched or made
READY=$(python tools/prepare_demo.py --shared "$SHARED" --work "$OUT/models")
DEMO=$(printf '%s\n' "$READY" | sed -n 1p)
KEYPOINTS=$(printf '%s\n' "$READY" | sed -n 2p)

python -m insightface_paddle --build_index "$OUT/friends.npz" \
    --img_dir "$DEMO/gallery" --label "$DEMO/gallery/label.txt" --detect_gallery \
    --landmark_model "$KEYPOINTS"
python -m insightface_paddle --det --rec --index "$OUT/friends.npz" \
    --input "$DEMO/query" --output "$OUT/drawn" --landmark_model "$KEYPOINTS"
