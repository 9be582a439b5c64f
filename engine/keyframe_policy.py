"""The command the docs show, kept where users learnt it: ``python -m engine.keyframe_policy VIDEO`` prints a
video's scene-change scores and the adaptive keyframes. The policy lives in engine/streaming/keyframe_policy.py;
this module only runs its ``main``."""
from engine.streaming.keyframe_policy import main

if __name__ == "__main__":
    main()
