"""Streaming prediction: ``VideoPredictor`` (``predictor.py``), the keyframe schedule (``keyframe_policy.py``),
the pipelined video job (``video_job.py``) and the ``--inference`` job around them: what ``--input`` names
(``input_plan.py``), one input to one folder (``inference_job.py``), a corpus of videos sharded over processes
(``corpus_job.py``)."""
