"""Network definitions: the encoder and decoder registries, the factory, and ONNX export."""
