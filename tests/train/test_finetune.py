"""Fine-tuning: data checks, the classifier trainer, the worker-process job slot and adapter management."""

import json

import pytest
import torch

from lmdemo.models import adapters
from lmdemo.models.merge import merge
from lmdemo.data import tabular as datasets_io
from lmdemo.config import Settings
from lmdemo.errors import InputError
from lmdemo.train.classifier import ClassifierTrainConfig, train_classifier

ROWS = [{"text": t, "label": l} for t, l in [
    ("The striker scored twice in the final.", "sport"), ("Stocks fell after the bank raised rates.", "business"),
    ("The goalkeeper saved a late penalty.", "sport"), ("The startup raised ten million in funding.", "business"),
    ("Our team won the league on Sunday.", "sport"), ("Quarterly profits beat expectations.", "business"),
    ("She ran the marathon in record time.", "sport"), ("The merger was approved by regulators.", "business"),
]] * 2


# ---------------------------------------------------------------- data checks

def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", b"", "empty"),
    ("blob.csv", b"\x00\x01\x02\x03binary", "binary"),
    ("latin.csv", b"text,label\ncaf\xe9,positive\n", "not UTF-8"),
    ("cols.csv", "review,stars\ngood,5\nbad,1\n", "missing column"),
    ("one.csv", "text,label\ngood,positive\nfine,positive\nnice,positive\n", "single class"),
    ("notes.txt", "hello", "unsupported file type"),
])
def test_bad_datasets_get_their_specific_message(tmp_path, name, content, message):
    with pytest.raises(InputError, match=message):
        datasets_io.prepare(_write(tmp_path, name, content), "classification")


def test_size_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets_io, "MAX_FILE_BYTES", 100)
    with pytest.raises(InputError, match="limit"):
        datasets_io.prepare(_write(tmp_path, "big.csv", "text,label\n" + "x,y\n" * 100), "classification")


def test_mapping_empty_rows_split_and_parquet(tmp_path):
    csv = "review,stars\n" + "".join(f"{r['text']},{r['label']}\n" for r in ROWS) + ",sport\nok,\n"
    data = datasets_io.prepare(_write(tmp_path, "d.csv", csv), "classification", {"review": "text", "stars": "label"})
    assert len(data.train) + len(data.validation) == len(ROWS) and data.labels == ["business", "sport"]
    assert any("2 row(s) with an empty" in n for n in data.notes)
    import pandas as pd

    pd.DataFrame([{"prompt": "Say hi", "response": "Hi!"}] * 5).to_parquet(tmp_path / "s.parquet")
    sft = datasets_io.prepare(tmp_path / "s.parquet", "sft")
    assert len(sft.train) == 4 and len(sft.validation) == 1


def test_bundled_sample_and_hub_offline():
    task, train, heldout = datasets_io.sample_path("topics (4 classes)")
    data = datasets_io.prepare(train, task, validation=heldout)
    assert len(data.labels) == 4 and len(data.validation) == 120
    with pytest.raises(InputError, match="offline"):
        datasets_io.prepare("someone/no-such-dataset", "classification")


# ---------------------------------------------------------------- adapters

def test_adapter_names_are_sanitised(tmp_path):
    s = Settings(home=tmp_path)
    assert adapters.safe_name("../../etc/passwd") == "etc-passwd"
    assert adapters.new_adapter_path("my topics/v1", s) == s.adapters_dir / "my-topics-v1"
    with pytest.raises(InputError):
        adapters.safe_name("../..")


# ---------------------------------------------------------------- training

def test_classifier_lora_run_saves_a_standard_adapter(prepared, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    out = tmp_path / "topics"
    cfg = ClassifierTrainConfig(output_dir=str(out), max_steps=4, batch_size=8, learning_rate=5e-3)
    result = train_classifier(ROWS, ROWS[:4], cfg)
    assert {"adapter_config.json", "adapter_model.safetensors", "lmdemo.json"} <= {p.name for p in out.iterdir()}
    weights = load_file(out / "adapter_model.safetensors")
    # the best validation pass is what is saved: LoRA moved from its zero start unless that was step 0
    moved = any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())
    assert moved == (result.best_step > 0), (result.best_step, result.history)
    assert not any("base_layer" in k for k in weights), "base weights are not part of the adapter"
    assert json.loads((out / "lmdemo.json").read_text())["labels"] == ["business", "sport"] == result.labels

    # plain PEFT reload gives the same probabilities as lmdemo's own path
    from transformers import AutoModelForSequenceClassification

    from lmdemo.jobs import sentiment
    from lmdemo.models import store

    base = AutoModelForSequenceClassification.from_pretrained(store.ensure("all-minilm-l6-v2"), num_labels=2)
    peft_model = PeftModel.from_pretrained(base, str(out)).eval()
    lm_out = sentiment.classify(["The keeper saved a penalty."], adapter=str(out))[0]
    tok = store.load_tokenizer(store.ensure("all-minilm-l6-v2"))
    with torch.no_grad():
        probs = peft_model(**tok(["The keeper saved a penalty."], return_tensors="pt")).logits.float().softmax(-1)[0]
    assert abs(probs.max().item() - lm_out.score) < 2e-2  # bf16 inference vs fp32 reload


def test_worker_job_cancel_keeps_a_loadable_adapter_and_refuses_a_second_start(prepared, tmp_path):
    from lmdemo.train.worker import TrainingJobs
    from lmdemo.jobs.sentiment import classify

    jobs = TrainingJobs()
    out = tmp_path / "cancel-me"
    config = {"output_dir": str(out), "epochs": 50, "batch_size": 4, "base_model": "all-minilm-l6-v2"}
    jobs.start("cancel-me", "classification", ROWS, ROWS[:4], config)
    with pytest.raises(InputError, match="already running"):
        jobs.start("second", "classification", ROWS, ROWS[:4], dict(config, output_dir=str(tmp_path / "b")))
    import time

    deadline = time.time() + 180
    while jobs.poll().step < 3 and time.time() < deadline:
        assert jobs.status.state in ("starting", "running"), jobs.status.message
        time.sleep(0.5)
    assert jobs.status.step >= 3
    jobs.cancel()
    status = jobs.wait(timeout=240)
    assert status.state == "cancelled", status.message
    assert status.step < status.max_steps
    assert classify(["A late goal won the cup."], adapter=str(out))[0].label in ("sport", "business")


def test_worker_crash_is_reported(prepared, tmp_path):
    from lmdemo.train.worker import TrainingJobs

    jobs = TrainingJobs()
    jobs.start("broken", "classification", ROWS, ROWS[:4],
               {"output_dir": str(tmp_path / "x"), "base_model": "no-such/model-anywhere"})
    status = jobs.wait(timeout=180)
    assert status.state == "failed" and "no-such/model-anywhere" in status.message


def test_card_and_merge_into_a_full_model(prepared, tmp_path):
    from huggingface_hub import ModelCard
    from transformers import AutoModelForSequenceClassification

    from lmdemo.jobs import sentiment
    from lmdemo.models import store

    out = tmp_path / "merge-me"
    train_classifier(ROWS, ROWS[:4], ClassifierTrainConfig(output_dir=str(out), max_steps=2, batch_size=8))
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2" and card.data.library_name == "peft"
    assert "eval_accuracy" in card.text and "business, sport" in card.text

    merged = merge(str(out), tmp_path / "merged")
    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    full = AutoModelForSequenceClassification.from_pretrained(merged).eval()
    tok = store.load_tokenizer(store.ensure("all-minilm-l6-v2"))
    text = "The merger was approved by regulators."
    with torch.no_grad():
        probs = full(**tok([text], return_tensors="pt")).logits.softmax(-1)[0]
    expected = sentiment.classify([text], adapter=str(out))[0]
    assert full.config.id2label[int(probs.argmax())] == expected.label
    assert abs(float(probs.max()) - expected.score) < 2e-2


def test_estimate_measures_real_steps(prepared):
    from lmdemo.train.estimate import estimate

    est = estimate("classification", "all-minilm-l6-v2", n_train=100, batch_size=8, max_length=64, labels=4)
    assert est.steps_per_epoch == 13 and est.seconds_per_step > 0
    assert est.seconds_per_epoch == pytest.approx(13 * est.seconds_per_step)
    assert 0 < est.trainable_params < est.total_params and "min per epoch" in est.text()


def test_cli_ctrl_c_stops_after_the_step_and_keeps_the_adapter(prepared, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS * 8))
    out = tmp_path / "interrupted"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "lmdemo", "finetune", "classification", "--data", str(data),
                             "--output", str(out), "--epochs", "30"], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(root)))
    deadline = time.time() + 120
    seen = ""
    while time.time() < deadline and "'loss'" not in seen:  # the Trainer's first log line: training is under way
        seen += proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr[-2000:]
    summary = json.loads(stdout)  # stdout is the summary object alone; the Trainer's log lines go to stderr
    assert summary["stopped_early"] is True and (out / "adapter_model.safetensors").is_file()
    assert "stopping after this step" in seen + stderr
    # Afterwards base and tuned are scored on the validation split; the summaries are kept for `lmdemo push`.
    assert set(summary["comparison"]) == {"base", "fine-tuned"}
    saved = json.loads((out / "eval-adapter.json").read_text())
    assert saved["metrics"] == summary["comparison"]["fine-tuned"] and saved["adapter"] == str(out)
    assert json.loads((out / "eval-base.json").read_text())["adapter"] is None


@pytest.mark.parametrize("bad", [{"learning_rate": float("nan")}, {"epochs": float("nan")}, {"learning_rate": -1.0},
                                 {"lora_r": 0}])
def test_classifier_settings_refuse_nan_and_non_positive_values(bad):
    with pytest.raises(InputError, match="positive"):
        ClassifierTrainConfig(output_dir="x", **bad)


def test_a_jobs_end_state_is_shown_again_after_a_restart(prepared, tmp_path):
    from lmdemo.train.worker import TrainingJobs

    jobs = TrainingJobs()
    jobs.start("before-restart", "classification", ROWS, ROWS[:4],
               {"output_dir": str(tmp_path / "x"), "base_model": "no-such/model-anywhere"}, owner="visitor-1")
    assert jobs.wait(timeout=180).state == "failed"
    jobs.poll("visitor-1")
    restarted = TrainingJobs()  # a new app process: nothing in memory
    seen = restarted.poll("visitor-1")
    assert seen.restored and seen.state == "failed" and seen.name == "before-restart"
    assert "no-such/model-anywhere" in seen.message
    assert restarted.poll("visitor-2").state == "idle"  # another owner's last run stays theirs
    assert restarted.poll().state != "failed" or restarted.poll().name != "before-restart"


def test_the_worker_ends_when_the_app_is_killed(prepared, tmp_path):
    """SIGKILL the process that started a run: the worker notices its parent is gone and exits."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = f"""
import json, sys, time
from lmdemo.train.worker import TrainingJobs
rows = {json.dumps(ROWS)}
jobs = TrainingJobs()
jobs.start("orphan", "classification", rows * 20, rows[:4],
           {{"output_dir": {str(tmp_path / "orphan")!r}, "epochs": 50, "base_model": "all-minilm-l6-v2"}})
print(jobs._proc.pid, flush=True)
while True:
    jobs.poll()
    time.sleep(0.5)
"""
    app = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker = int(app.stdout.readline())
    time.sleep(3)
    assert _alive(worker)
    app.send_signal(signal.SIGKILL)
    app.wait(30)
    deadline = time.time() + 30
    while _alive(worker) and time.time() < deadline:
        time.sleep(0.5)
    assert not _alive(worker), "the training worker outlived the app"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
