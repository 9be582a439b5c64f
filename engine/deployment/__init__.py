"""Deployment: the ONNX graphs traced from the model and checked at every size (``onnx_export.py``) and those
graphs on ONNX Runtime behind GSVNet's methods (``onnx_runtime.py``), and the ``--export onnx`` job
(``export_job.py``)."""
