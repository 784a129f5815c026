"""A helper the decoding-backend tests share: stream a long reply and press Stop after a few pieces."""

import threading

from lmdemo.jobs.generation import GenerationRequest, build_inputs
from lmdemo.engine.streaming import GenerationParams, stream


def stop_after(lm, pieces: int = 3, prompt: str = "Write a very long story about a dragon."):
    """Stream greedily, set the stop event after ``pieces`` updates; return the final stats."""
    inputs = build_inputs(lm, GenerationRequest(prompt))
    stop = threading.Event()
    seen = 0
    for _, stats in stream(lm, inputs, GenerationParams(max_new_tokens=400, temperature=0), stop=stop):
        seen += 1
        if seen == pieces:
            stop.set()
    return stats
