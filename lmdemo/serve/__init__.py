"""Serving: the app's warm-up and the Hugging Face Space builder."""
