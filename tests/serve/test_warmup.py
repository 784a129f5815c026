"""The app's background warm-up: the defaults are loaded, and their fast decoders built, before a first click."""

from lmdemo.engine import fastgen
from lmdemo.serve import warmup
from lmdemo.config import get_settings
from lmdemo.models.loading import CACHE, load
from lmdemo.models.registry import DEFAULT_CHAT_MODEL, DEFAULT_COMPLETION_MODEL, DEFAULT_ENCODER_MODEL


def test_warm_up_loads_the_defaults_and_builds_their_decoders(prepared):
    thread = warmup.start()
    assert warmup.start() is thread  # once per process, however often launch() runs
    thread.join(timeout=600)
    assert not thread.is_alive()
    loaded = {m.spec.model for m in CACHE.loaded()}
    assert {DEFAULT_CHAT_MODEL, DEFAULT_COMPLETION_MODEL, DEFAULT_ENCODER_MODEL} <= loaded
    for name in (DEFAULT_CHAT_MODEL, DEFAULT_COMPLETION_MODEL):
        # the first request finds it built (the configured kind: exact unless LMDEMO_FASTGEN_WEIGHTS says)
        assert get_settings().fastgen_weights in fastgen._DECODERS.get(load(name).model, {})
