"""mtrank training: multi-task rankers in PyTorch, split ONNX export, model store."""
