"""deploy/: small and fast models to ship, each checked against the run it came from.

    registry.py      @register_exporter: `headstart export RUN --format NAME` dispatches here
    onnx_export.py   the ONNX exporter for every run kind (image, text; TF-IDF via tfidf_onnx.py)
    onnx_predict.py  predict with an exported model and onnxruntime alone (no PyTorch import)
    prune.py         structured channel pruning (torch-pruning) + a short recovery fine-tune

The ONNX graph tools, the feature-extraction engines and the deploy table's measurements sit
below the pipeline, in engines/ (the probe and every fit use them).

Nothing here is imported by `import headstart`: each command imports what it uses.
"""
