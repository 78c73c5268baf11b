#!/bin/sh
# Quick-start demo: index the demo gallery, then detect and recognise the faces in the demo queries.
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

python -m insightface_paddle --build_index "$OUT/friends.npz" \
    --img_dir "$DEMO/gallery" --label "$DEMO/gallery/label.txt"
python -m insightface_paddle --det --rec --index "$OUT/friends.npz" \
    --input "$DEMO/query" --output "$OUT/drawn"
