"""Background warm-up for the app: fetch/convert the built-ins, load the defaults and build their fast
decoders before the first click.

The app starts it after gradio is imported, not before: both are Python imports under one GIL (loading the
first model is mostly importing transformers' model code), so on 2 cores starting it earlier only made the
page answer later (measured with bench/start.py).
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("lmdemo.serve.warmup")
_LOCK = threading.Lock()
_THREAD: list[threading.Thread] = []


def start() -> threading.Thread:
    """Start warming up, once per process; later calls return the same thread."""
    with _LOCK:
        if not _THREAD:
            from lmdemo.models.loading import preload_libraries

            preload_libraries()  # before a second thread can import the same lazy modules
            thread = threading.Thread(target=_run, daemon=True, name="lmdemo-warm-up")
            thread.start()
            _THREAD.append(thread)
        return _THREAD[0]


def _after_requests() -> None:
    from lmdemo.engine.streaming import busy

    # On 2 cores a background load beside a visitor's generation slows that reply several-fold: let it finish.
    time.sleep(0.2)  # a request queued behind the load just done enters its generation first
    while busy():
        time.sleep(0.1)


def _run() -> None:
    from lmdemo.models import store
    from lmdemo.models.loading import load
    from lmdemo.models.registry import DEFAULT_CHAT_MODEL, DEFAULT_COMPLETION_MODEL
    from lmdemo.engine.streaming import prepare_decoder

    try:
        store.prepare()
        prepare_decoder(load(DEFAULT_CHAT_MODEL))
        from lmdemo.jobs.sentiment import classify

        _after_requests()
        classify(["warm up"])
        _after_requests()
        prepare_decoder(load(DEFAULT_COMPLETION_MODEL))
        _after_requests()
        from lmdemo.jobs.summarization import SummaryRequest

        default = SummaryRequest("-")  # the one-sentence summariser: Gemma with the bundled news LoRA
        load(default.model, adapter=default.adapter)
    except Exception:  # noqa: BLE001 - a failed warm-up is retried, with a visible error, by the first request
        log.exception("warm-up failed")
