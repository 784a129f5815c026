"""The web UI: Gradio components wired to the lmdemo library (which never imports gradio)."""
