"""The frozen keyframe net as a teacher (``--pseudo-labels 1``): its predictions cached on disk per frame
(``cache.py``) and the label-free samples built on them, also the reference of agreement scoring
(``pseudo_labels.py``). Used by training and evaluation alike."""
