"""ONNX variants of the test exports for the runner, validation, bench and report tests."""
import numpy as np


def perturbed_copy(onnx_path, output, scale=0.5, seed=0):
    """A copy of an exported ONNX whose float weights carry multiplicative noise (a model that really
    drifts from FP32), with the source's manifest derived beside it."""
    import onnx
    from onnx import numpy_helper

    from skdeploy.manifest import add_stage, load_manifest, write_manifest
    from skdeploy.models.entry import derive_manifest
    from skdeploy.onnx.io import save_onnx

    model = onnx.load(str(onnx_path))
    rng = np.random.default_rng(seed)
    for index, tensor in enumerate(model.graph.initializer):
        array = numpy_helper.to_array(tensor)
        if array.dtype == np.float32 and array.size > 1:
            noisy = array * (1 + scale * rng.standard_normal(array.shape)).astype(np.float32)
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(noisy, tensor.name))
    save_onnx(model, output)
    manifest = derive_manifest(load_manifest(onnx_path))
    add_stage(manifest, "test-perturbation", {"scale": scale, "seed": seed})
    write_manifest(output, manifest, kind="onnx")
    return output


def static_batch_copy(onnx_path, output, batch):
    """The same graph with its batch dimension declared static (what a --batch N export declares)."""
    import onnx

    model = onnx.load(str(onnx_path))
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = batch
    onnx.save(model, str(output))
    return output
