"""The import path the README shows users: ``from engine.inference import VideoPredictor``.

The predictor lives in ``engine/streaming/predictor.py``; this module only re-exports it.
"""
from engine.streaming.predictor import StepOutput, VideoPredictor

__all__ = ["StepOutput", "VideoPredictor"]
