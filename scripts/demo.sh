#!/bin/sh
# Quick-start demo: index the faces of the demo gallery, then detect, align and recognise the faces
# in the demo queries.
# Prints a table and writes drawn images to $OUT/drawn.
#   INSIGHTFACE_PADDLE_DEMO   demo folder with gallery/ and query/ (default: $SHARED/demo/friends)
#   INSIGHTFACE_PADDLE_HOME   model cache; defaults to $SHARED/models when that offline copy exists,
#                             else models download to ~/.insightface_paddle on first use
set -e
cd "$(dirname "$0")/.."
SHARED=${INSIGHTFACE_PADDLE_SHARED:-../shared}
DEMO=${INSIGHTFACE_PADDLE_DEMO:-$SHARED/demo/friends}
OUT=${OUT:-output/demo}
if [ -z "${INSIGHTFACE_PADDLE_HOME:-}" ] && [ -d "$SHARED/models" ]; then
    INSIGHTFACE_PADDLE_HOME="$SHARED/models"
    export INSIGHTFACE_PADDLE_HOME
fi

# faces are aligned by their keypoints: make the keypoint model once if the cache lacks it
KEYPOINTS="${INSIGHTFACE_PADDLE_HOME:-$HOME/.insightface_paddle}/blazeface_keypoints_mediapipe_0.10.14"
if [ ! -f "$KEYPOINTS/model_meta.json" ]; then
    KEYPOINTS="$OUT/models/blazeface_keypoints_mediapipe_0.10.14"
    TFLITE="$SHARED/models/mediapipe_face_0.10.14/face_detection_short_range.tflite"
    if [ ! -f "$KEYPOINTS/model_meta.json" ]; then
        if [ -f "$TFLITE" ]; then
            python tools/convert_mediapipe_face.py --output "$KEYPOINTS" --source "$TFLITE"
        else  # fetches the mediapipe wheel
            python tools/convert_mediapipe_face.py --output "$KEYPOINTS"
        fi
    fi
fi

python -m insightface_paddle --build_index "$OUT/friends.npz" \
    --img_dir "$DEMO/gallery" --label "$DEMO/gallery/label.txt" --detect_gallery \
    --landmark_model "$KEYPOINTS"
python -m insightface_paddle --det --rec --index "$OUT/friends.npz" \
    --input "$DEMO/query" --output "$OUT/drawn" --landmark_model "$KEYPOINTS"
