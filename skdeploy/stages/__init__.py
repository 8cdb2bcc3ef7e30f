"""The stages an artifact goes through, one module each with one entry point, its settings and its result:

    export     PyTorch -> ONNX (passes, parity)           export_model(loaded, output, ExportSettings())
    optimize   ONNX -> ONNX through the graph passes      optimize_onnx(source, output)
    calibrate  FP32 ONNX -> INT8 Q/DQ or FP16 ONNX        calibrate_model(source, output, CalibrationSettings())
    build      ONNX -> TensorRT engine (+ calibration)    build(source, engine, BuildSettings())
    validate   candidates vs the FP32 reference          validate(candidates, settings=ValidateSettings())

Each writing stage runs through `stage.run_stage` and records `source: {file, sha256}` in its manifest entry.
The machinery lives below: graph/ (passes), calib/ (ranges, Q/DQ, FP16, budget), engine/ (build plans,
TensorRT builds). Importing this package imports no stage.
"""
