"""One rank of the app's multi-process fine-tuning run: ``torchrun ... -m lmdemo.train.ranks JOB_DIR``.

The app's training worker writes the planned job (task, rows, settings) to ``JOB_DIR/job.json`` and starts
torchrun; every rank trains its shard (:mod:`lmdemo.train.distributed`), rank 0 appends progress to
``JOB_DIR/progress.jsonl`` and names the adapter in ``JOB_DIR/result.json``. Creating ``JOB_DIR/stop`` stops
every rank after the same step, and rank 0 saves the adapter trained so far.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lmdemo.train import distributed
from lmdemo.train.runlog import write_json


def main(argv: list[str]) -> int:
    folder = Path(argv[0])
    job = json.loads((folder / "job.json").read_text())
    from lmdemo.train.plan import train_rows

    progress = open(folder / "progress.jsonl", "a", encoding="utf-8") if distributed.is_main() else None

    def log(entry: dict) -> None:
        if progress is not None:
            progress.write(json.dumps({k: v for k, v in entry.items() if isinstance(v, (int, float, str))}) + "\n")
            progress.flush()

    result = train_rows(job["task"], job["train"], job["validation"], job["config"], on_log=log,
                        stop_event=distributed.StopFile(folder / "stop"))
    if progress is not None:
        progress.close()
        write_json(folder / "result.json", {"output_dir": result.output_dir})
    distributed.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
