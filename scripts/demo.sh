#!/bin/sh
# The main job on the embedded default: the shipped demo model (sknet-fmnist) and its shipped data,
# through every stage of the pipeline. Outputs: out/demo/ (ONNX, manifests, validation report),
# engines/ (TensorRT-RTX engines + sidecars, built without a GPU for RTX 30/40 series).
set -eu
cd "$(dirname "$0")/.."
SK=.venv/bin/skdeploy
OUT=out/demo
ENGINES=engines
mkdir -p "$OUT" "$ENGINES"

echo "== 1/6 export: trace, simplify, fold BN, rewrite the SK select, parity vs PyTorch"
$SK export --dynamic-batch -o "$OUT/sknet-fmnist.onnx" --force

echo "== 2/6 calibrate: INT8 Q/DQ (default method mse, shipped Fashion-MNIST train-split set) and FP16"
$SK calibrate "$OUT/sknet-fmnist.onnx" --int8 -o "$OUT/sknet-fmnist.int8.onnx" --force
$SK calibrate "$OUT/sknet-fmnist.onnx" --fp16 -o "$OUT/sknet-fmnist.fp16.onnx" --force

echo "== 3/6 build-engine: TensorRT-RTX, compute capabilities 8.6 and 8.9, dynamic batch 1..32"
for precision in fp32 fp16 int8; do
    source="$OUT/sknet-fmnist.onnx"
    [ "$precision" = fp32 ] || source="$OUT/sknet-fmnist.$precision.onnx"
    $SK build-engine "$source" --backend tensorrt-rtx --target rtx --compute-capability 8.6,8.9 \
        -o "$ENGINES/sknet-fmnist-rtx-$precision.engine" --force
done

echo "== 4/6 deploy: one command to a validated bundle per runtime (docs/deploy.md): DeepStream on jetson-orin and"
echo "   Triton on desktop, FP16. Both load classic TensorRT engines, which the device builds from the bundle's ONNX;"
echo "   each bundle is admitted under its runtime's own preprocessing (nvinfer's transform emulated, client.py's)"
rm -rf "$OUT/bundle-deepstream" "$OUT/bundle-triton"  # this demo's own bundles; a rerun still reuses their work
$SK deploy --fp16 --target jetson-orin --format deepstream -o "$OUT/bundle-deepstream"
$SK deploy --fp16 --target desktop --format triton -o "$OUT/bundle-triton"

echo "== 5/6 validate on all 10,000 Fashion-MNIST test images against FP32 PyTorch"
echo "   (engines cannot execute without an RTX GPU; their ONNX twins run in onnxruntime)"
$SK validate --candidate "$OUT/sknet-fmnist.onnx" --candidate "$OUT/sknet-fmnist.fp16.onnx" \
    --candidate "$OUT/sknet-fmnist.int8.onnx" --report "$OUT/validation.html" \
    --save-reference "$OUT/reference.npz" --force

echo "== 6/6 done: engines in $ENGINES/, report in $OUT/validation.html, bundles in $OUT/bundle-*/ (see README.txt)"
