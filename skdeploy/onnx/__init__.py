"""The ONNX graph toolkit every stage shares: reading and writing models (`io`), an index of producers,
readers, constants and types (`index`), weight-free shape inference (`shapes`), topological order
(`toposort`), dead-code and initializer clean-up (`cleanup`), module scopes kept in node metadata
(`scopes`), building new nodes (`build`) and one-shot onnxruntime runs for parity checks (`run`).

Import the modules directly (`from skdeploy.onnx.index import GraphIndex`); inside this package
`import onnx` is the onnx library itself (absolute imports).
"""
