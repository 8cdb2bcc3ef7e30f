"""Two-node ONNX models for the engine build tests."""
import onnx
from onnx import TensorProto, helper


def tiny_onnx(path, op="Relu", domain="", batch="batch", elem=TensorProto.FLOAT, qdq=False):
    """A two-node model: Relu then `op` (custom ops need a non-default domain to pass the ONNX checker)."""
    shape = [batch, 3, 8, 8]
    nodes = [helper.make_node("Relu", ["input"], ["hidden"], name="relu_0")]
    initializers = []
    if qdq:
        initializers = [helper.make_tensor("scale", TensorProto.FLOAT, [], [0.05]),
                        helper.make_tensor("zero", TensorProto.INT8, [], [0])]
        nodes += [helper.make_node("QuantizeLinear", ["hidden", "scale", "zero"], ["q"], name="quant_1"),
                  helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"], name="dequant_2")]
        last = "dq"
    else:
        last = "hidden"
    nodes.append(helper.make_node(op, [last], ["logits"], name=f"{op.lower()}_last", domain=domain))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", elem, shape)],
                              [helper.make_tensor_value_info("logits", elem, shape)], initializers)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path
