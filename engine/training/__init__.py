"""Training: the propagation modules (flow net + GSV, ``propagation.py``) and the keyframe net (``segnet.py``),
optional flow pre-training, the losses (PIDNet's own in ``pidnet_loss.py``), the loop pieces both trainers share
(``loop.py``: loaders, batch schedule, time budget, DDP) and the memo of frozen keyframe logits."""
