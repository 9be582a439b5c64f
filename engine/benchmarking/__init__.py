"""Benchmarking: per-frame-type step timing (``step_timing.py``), throughput arithmetic and the ``--benchmark``
report (``throughput_report.py``), the machine it ran on (``machine.py``: /proc, load), the benchmark model
(``bench_model.py``), PyTorch vs ONNX Runtime (``backend_timing.py``), the ``--benchmark`` run
(``frame_benchmark.py``) and the ``--benchmark-video`` run and report (``video_benchmark.py``,
``video_report.py``)."""
