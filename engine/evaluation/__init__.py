"""Evaluation: the protocol (avg/min mIoU per keyframe distance, ``protocol.py``), the whole-clip consistency
pass (TC, mVC: ``consistency.py``), prediction files on disk (result names, ``--save`` parsing, staged folders:
``save_results.py``) and the ``--evaluate 1`` job that runs them and publishes metrics.json (``evaluate_job.py``)."""
