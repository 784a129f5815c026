"""Fine-tuning across processes: torchrun, accelerate launch and `lmdemo finetune --processes`, on CPU (gloo).

Every process trains on its shard; rank 0 alone saves the adapter, compares base and tuned and prints the summary.
The runs are short (a bundled sample for one epoch, or two SFT steps) but real: two processes, one process group.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmdemo.cli import _finetune_argv, build_parser
from lmdemo.train import distributed

ROOT = Path(__file__).resolve().parents[2]
ACCELERATE_CONFIGS = ROOT / "configs" / "accelerate"
TOPICS = "topics (4 classes)"  # bundled: 240 training rows, 120 held out
SFT_ROWS = [{"prompt": "What is 2+2?", "response": "Four."}, {"prompt": "Capital of France?", "response": "Paris."},
            {"prompt": "Colour of the sky?", "response": "Blue."}, {"prompt": "Opposite of hot?", "response": "Cold."}]


@pytest.fixture
def cpu_env(prepared, tmp_path):
    """Environment of a CPU-only run: a tmp LMDEMO_HOME that borrows the prepared built-ins, one thread a process."""
    from lmdemo.config import get_settings

    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(get_settings().models_dir, target_is_directory=True)
    return dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", LMDEMO_HOME=str(home),
                HF_DATASETS_CACHE=str(tmp_path / "datasets"), PYTHONPATH=str(ROOT))


def run(command, env, timeout=600):
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def torchrun(*args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lmdemo", *args]


def check_one_adapter_from_rank0(out, proc, steps: int, compared: bool = True) -> dict:
    """Both ranks trained `steps` steps together; one adapter folder; one summary, from rank 0."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        assert f"rank {rank}/2: trained {steps} steps (Trainer world size 2)" in proc.stderr, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # exactly one JSON object: rank 1 printed nothing
    assert summary["output_dir"] == str(out)
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(out.name)] == [out.name]  # no .tmp/.old left
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "lmdemo.json"} <= names
    if compared:
        assert {"eval-base.json", "eval-adapter.json"} <= names
        saved = json.loads((out / "eval-adapter.json").read_text())
        assert saved["metrics"] == summary["comparison"]["fine-tuned"]
    return summary


@pytest.mark.slow
def test_torchrun_classification_shards_the_data_and_rank0_saves_once(cpu_env, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from lmdemo.models import store

    out = tmp_path / "adapters" / "topics"
    proc = run(torchrun("finetune", "classification", "--sample", TOPICS, "--max-steps", "4", "--output", str(out)),
               cpu_env)
    # 4 steps of 2 x 32 rows: each process reads its own shard
    summary = check_one_adapter_from_rank0(out, proc, steps=4)
    assert summary["train_rows"] == 240 and summary["validation_rows"] == 120
    meta = json.loads((out / "lmdemo.json").read_text())
    base = AutoModelForSequenceClassification.from_pretrained(store.ensure("all-minilm-l6-v2"),
                                                              num_labels=len(meta["labels"]))
    model = PeftModel.from_pretrained(base, str(out))  # a plain PEFT adapter
    assert any("lora_B" in name for name, _ in model.named_parameters())


@pytest.mark.slow
def test_processes_flag_runs_torchrun_for_sft(cpu_env, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lmdemo.models import store

    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in SFT_ROWS * 4))
    evals = tmp_path / "sft-eval.jsonl"
    evals.write_text("".join(json.dumps(r) + "\n" for r in SFT_ROWS[:2]))
    out = tmp_path / "adapters" / "sft"
    proc = run([sys.executable, "-m", "lmdemo", "finetune", "sft", "--data", str(data), "--eval-data", str(evals),
                "--max-steps", "2", "--output", str(out), "--processes", "2"], cpu_env)
    check_one_adapter_from_rank0(out, proc, steps=2)
    launched = [line for line in proc.stderr.splitlines() if line.startswith("running: ")]
    assert len(launched) == 1 and "torch.distributed.run" in launched[0] and "--nproc_per_node=2" in launched[0]
    assert "--processes" not in launched[0]
    base = AutoModelForCausalLM.from_pretrained(store.ensure("smollm2-135m-instruct"))
    PeftModel.from_pretrained(base, str(out))


@pytest.mark.slow
def test_accelerate_launch_with_the_ddp_config_trains_two_cpu_processes(cpu_env, tmp_path):
    """ddp.yaml is accelerate's multi-GPU (torchrun) launcher; without CUDA the Trainer runs it on gloo."""
    out = tmp_path / "adapters" / "topics"
    config = ACCELERATE_CONFIGS / "ddp.yaml"
    proc = run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
                "--main_process_port", "0", "-m", "lmdemo", "finetune", "classification", "--sample", TOPICS,
                "--max-steps", "4", "--output", str(out), "--no-compare"], cpu_env)
    check_one_adapter_from_rank0(out, proc, steps=4, compared=False)


@pytest.mark.parametrize("value", ["0", "99", "-1"])
def test_bad_process_count_is_one_line_and_exit_2(value):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(ROOT))
    proc = run([sys.executable, "-m", "lmdemo", "finetune", "classification", "--sample", TOPICS, "--output", "x",
                "--processes", value], env, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "`--processes` must be between 1 and" in lines[0] and value in lines[0], proc.stderr
    assert proc.stdout == ""


def test_rerun_arguments_give_the_same_request_back():
    argv = ["finetune", "sentiment", "--data", "-odd name.csv", "--epochs", "2", "--lr", "1e-5", "--no-compare",
            "--text-column", "review", "--output", "mine", "--processes", "2"]
    args = build_parser().parse_args(argv)
    rerun = _finetune_argv(args)
    assert "--processes" not in " ".join(rerun) and "--data=-odd name.csv" in rerun
    again = build_parser().parse_args(rerun)
    skip = {"parser", "processes", "func"}
    assert {k: v for k, v in vars(again).items() if k not in skip} == {k: v for k, v in vars(args).items()
                                                                        if k not in skip}
    assert again.processes == 1


def test_launch_command_and_single_process_defaults(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    distributed.barrier()  # no process group: nothing to wait for
    command = distributed.launch_command(3, ["finetune", "sft"])
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=3" in command and command[-4:] == ["-m", "lmdemo", "finetune", "sft"]
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not distributed.is_main() and distributed.world_size() == 2


@pytest.mark.parametrize("name, kind, stage", [("ddp.yaml", "MULTI_GPU", None), ("zero2.yaml", "DEEPSPEED", 2),
                                               ("zero3.yaml", "DEEPSPEED", 3)])
def test_accelerate_configs_are_valid(name, kind, stage):
    import yaml
    from accelerate.commands.config import load_config_from_file

    text = (ACCELERATE_CONFIGS / name).read_text()
    config = yaml.safe_load(text)
    assert config["distributed_type"] == kind and config["num_processes"] >= 2 and config["num_machines"] == 1
    assert "accelerate launch --config_file configs/accelerate/" + name in text  # the command, in a comment
    if stage:
        assert config["deepspeed_config"]["zero_stage"] == stage and "pip install deepspeed" in text
    loaded = load_config_from_file(str(ACCELERATE_CONFIGS / name))  # as `accelerate launch` reads it: no unknown key
    assert loaded.distributed_type.value == kind and loaded.mixed_precision == "no"


def test_processes_is_refused_under_a_launcher(monkeypatch, capsys):
    from lmdemo.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["finetune", "classification", "--sample", TOPICS, "--output", "x", "--processes", "2"]) == 2
    assert "give the process count to the launcher" in capsys.readouterr().err


def start_two_process_job(monkeypatch, out, max_steps):
    """The app's training worker given a topics run in two CPU processes: (plan, jobs)."""
    from lmdemo.train.plan import FinetuneRequest, plan
    from lmdemo.train.worker import TrainingJobs

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    planned = plan(FinetuneRequest(task="classification", sample=TOPICS, max_steps=max_steps, output=str(out)))
    jobs = TrainingJobs()
    jobs.start(planned.name, planned.task, planned.data.train, planned.data.validation, planned.config, processes=2)
    return planned, jobs


@pytest.mark.slow
def test_the_apps_worker_trains_in_two_processes(prepared, tmp_path, monkeypatch):
    """The Fine-tune tab's path on a machine with several GPUs, run on CPU: the worker starts torchrun on the
    planned rows, shows rank 0's steps and losses, and compares base and tuned as for one process."""
    import math

    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from lmdemo.models import store
    from lmdemo.train.classifier import ClassifierTrainConfig, schedule

    out = tmp_path / "adapters" / "two"
    planned, jobs = start_two_process_job(monkeypatch, out, max_steps=4)
    status = jobs.wait(timeout=600)
    assert status.state == "finished", status.message
    assert status.step == status.max_steps == 4 and status.losses, status.losses  # rank 0's logs, via its progress file
    # by epochs, each process steps through its half of the rows: half the steps one process would take
    rows, cfg = len(planned.data.train), ClassifierTrainConfig(output_dir="x", epochs=12)
    batch, two = schedule(rows, cfg, processes=2)
    assert two == math.ceil(12 * math.ceil(rows / (2 * batch))) == schedule(rows, cfg)[1] / 2
    assert {"base", "fine-tuned"} <= set(status.comparison["metrics"]) and status.output_dir == str(out)
    assert [p.name for p in out.parent.iterdir()] == ["two"]  # one adapter folder, nothing left aside
    base = AutoModelForSequenceClassification.from_pretrained(store.ensure("all-minilm-l6-v2"), num_labels=4)
    PeftModel.from_pretrained(base, str(out))


@pytest.mark.slow
def test_cancel_stops_every_rank_at_the_same_step_and_keeps_the_adapter(prepared, tmp_path, monkeypatch):
    """Cancel in a two-process run: the ranks agree on the step to stop at (no rank left waiting), rank 0 saves."""
    import time

    out = tmp_path / "adapters" / "stopped"
    _, jobs = start_two_process_job(monkeypatch, out, max_steps=24)
    deadline = time.time() + 300
    while jobs.poll().step < 1 and time.time() < deadline:
        time.sleep(0.5)
    jobs.cancel()
    status = jobs.wait(timeout=300)
    assert status.state == "cancelled", status.message
    assert 1 <= status.step < status.max_steps == 24  # stopped early
    assert (out / "adapter_model.safetensors").is_file()
