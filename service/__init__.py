"""mtrank serving: FastAPI + onnxruntime ranking service (no torch)."""
