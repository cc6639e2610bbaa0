"""The scoring engine: model registry, feature assembly, onnxruntime sessions, ranking, top-k."""
