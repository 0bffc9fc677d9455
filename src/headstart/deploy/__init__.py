"""deploy/: small and fast models to ship, each checked against the run it came from.

    registry.py      @register_exporter: `headstart export RUN --format NAME` dispatches here
    onnx_graph.py    torch -> ONNX, onnxruntime sessions, int8 (static QDQ) and fp16 conversion
    onnx_export.py   the ONNX exporter for every run kind (image, text; TF-IDF via tfidf_onnx.py)
    onnx_predict.py  predict with an exported model and onnxruntime alone (no PyTorch import)
    prune.py         structured channel pruning (torch-pruning) + a short recovery fine-tune
    measure.py       parameters, MFLOPs, file size, latency and throughput: the deploy table
    engines.py       feature-extraction engines for the embed stage (eager, compile, ONNX Runtime)

Nothing here is imported by `import headstart`: each command imports what it uses.
"""
