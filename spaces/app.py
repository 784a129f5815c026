"""Entry point of the lmdemo Space: demo mode on unless the Space's variables say otherwise."""

import os

# A shared free CPU Space: cap training and the queue. A duplicated Space can set LMDEMO_DEMO_MODE=0.
os.environ.setdefault("LMDEMO_DEMO_MODE", "1")
# Viewers feel decode speed: int8 copies decode about 3x the plain pipeline on 2 vCPUs, with summaries and
# translations as good as exact (bench/README.md). LMDEMO_FASTGEN_WEIGHTS=exact gives generate's own tokens.
os.environ.setdefault("LMDEMO_FASTGEN_WEIGHTS", "int8")

from webui.app import launch  # noqa: E402  (after the setting above)

if __name__ == "__main__":
    launch(host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"))
