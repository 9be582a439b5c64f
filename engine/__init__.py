"""The library the modes use, one sub-package per concept (each ``__init__`` says what it owns):

- ``training/``      propagation and keyframe-net training, flow pre-training, losses, loop pieces, keyframe cache
- ``teacher/``       the frozen keyframe net as a teacher: its cached predictions and the label-free samples
- ``evaluation/``    the evaluation protocol, the whole-clip consistency pass, prediction files on disk
- ``streaming/``     the streaming predictor, the keyframe schedule, the pipelined video job, ``--inference`` inputs
- ``deployment/``    ONNX export and the exported graphs on ONNX Runtime
- ``benchmarking/``  step timing, throughput reports, backend comparison, the video-job benchmark

and, at this level, what every concept shares: ``distributed.py`` (process groups), ``runs.py`` (run folders,
resume, weight paths), ``model_builder.py`` (Config -> GSVNet with its weights); ``inference.py`` and
``keyframe_policy.py`` keep the public paths (``from engine.inference import VideoPredictor``,
``python -m engine.keyframe_policy VIDEO``).

Sub-packages import each other only downwards: benchmarking, training -> streaming -> evaluation -> teacher,
deployment -> the shared modules (tests/test_import_graph.py).
"""
