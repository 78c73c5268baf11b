#!/usr/bin/env sh
# Train in dynamic-graph mode; see launch_train.sh for the 8-GPU default and the
# DEVICE=cpu NPROC=2 override.
exec sh "$(dirname "$0")/launch_train.sh" False "$@"
