"""Evaluation: the protocol (avg/min mIoU per keyframe distance, ``protocol.py``), the whole-clip consistency
pass (TC, mVC: ``consistency.py``) and prediction files on disk (PNGs, ``--save`` parsing, staged folders:
``save_results.py``)."""
