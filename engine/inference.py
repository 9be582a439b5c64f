"""The import path the README shows users: ``from engine.inference import VideoPredictor``.

The predictor lives in ``engine/predictor.py``; this module only re-exports it.
"""
from engine.predictor import StepOutput, VideoPredictor

__all__ = ["StepOutput", "VideoPredictor"]
