"""Start the lmdemo web app: `python app.py` (offline defaults; see README for settings)."""

from webui.app import launch

if __name__ == "__main__":
    launch()
