"""Export a finished run as a merged Hugging Face model, a bare adapter, or ONNX, each checked against the
run's own model on a fixed batch before it is declared done (recipes/export.py runs it)."""
