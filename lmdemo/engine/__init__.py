"""Engines: streaming generation on a model thread, the fast CPU decode loop, llama.cpp, the fast encoder."""
