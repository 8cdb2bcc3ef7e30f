#!/bin/sh
# The main job on the embedded default: the shipped demo model (sknet-fmnist) and its shipped data,
# through every stage of the pipeline. Outputs: out/demo/ (ONNX + manifests), engines/ (engines + sidecars).
set -eu
cd "$(dirname "$0")/.."
SK=.venv/bin/skdeploy
OUT=out/demo
mkdir -p "$OUT"

echo "== export (trace, simplify, fold BN, rewrite SK select, parity vs PyTorch)"
$SK export --dynamic-batch -o "$OUT/sknet-fmnist.onnx" --force
