"""engines/: a frozen model run outside training, below the strategies that use it.

    extract.py     feature-extraction engines for the embed stage (eager, compile, ONNX Runtime
                   fp32/int8): the probe, rank, auto's rates and CORAL extract with them
    onnx_graph.py  torch -> ONNX, onnxruntime sessions, int8 (static QDQ) and fp16 conversion,
                   shared by the engines and by deploy/'s exporter and predictor
    measure.py     parameters, MFLOPs, file size, latency and throughput: the deploy table,
                   whose first row every fit records (post_fit.py)

Here, not in deploy/, because the probe and a fit's closing need them and deploy/ (export,
prune) stands above the pipeline. Importing the package imports nothing: the onnxruntime
predictor reads onnx_graph without PyTorch.
"""
