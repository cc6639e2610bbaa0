"""Export a trained ranker as the two-graph ONNX split, verify it and publish it to the model store."""
