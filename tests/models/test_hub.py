"""Hub plugin and Space: dry-run folder, model card, push/pull against a loopback Hub, the built Space."""

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmdemo.eval import evaluation
from lmdemo.models import adapters, hub
from lmdemo.serve import space
from lmdemo.errors import AdapterError, InputError, ModelNotFoundError
from lmdemo.jobs.sentiment import DEFAULT_ADAPTER, classify

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_lmdemoTestSecretToken1234567890"
TEXTS = ["I loved every minute of it.", "Broke after two days, avoid.", "Fine, nothing special but it works."]


@pytest.fixture(scope="module")
def evals(prepared, tmp_path_factory):
    """Eval summaries of the bundled sentiment adapter and of its base model (zero-shot) on 40 examples."""
    folder = tmp_path_factory.mktemp("evals")
    tuned = evaluation.run("sentiment", limit=40, adapter=DEFAULT_ADAPTER)
    base = evaluation.run("sentiment", limit=40, model="all-minilm-l6-v2")
    return [evaluation.save(tuned, folder / "adapter.json"), evaluation.save(base, folder / "base.json")]


@pytest.fixture(scope="module")
def dry_run(evals, tmp_path_factory):
    out = tmp_path_factory.mktemp("dry") / "upload"
    result = adapters.push(DEFAULT_ADAPTER, "alice/sentiment-minilm", dry_run=out, eval_paths=evals)
    assert result.dry_run and result.folder == out
    return out


def test_dry_run_folder_is_exactly_the_upload(dry_run):
    assert sorted(p.name for p in dry_run.iterdir()) == ["README.md", "adapter_config.json",
                                                          "adapter_model.safetensors", "lmdemo.json"]
    config = json.loads((dry_run / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"  # not a local path


def test_dry_run_folder_loads_with_plain_peft(dry_run, settings):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base_dir = settings.models_dir / "all-minilm-l6-v2"
    labels = json.loads((dry_run / "lmdemo.json").read_text())["labels"]
    base = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=len(labels))
    model = PeftModel.from_pretrained(base, dry_run).eval()
    tok = AutoTokenizer.from_pretrained(base_dir)
    with torch.inference_mode():
        logits = model(**tok(TEXTS, padding=True, return_tensors="pt")).logits
    plain = [labels[i] for i in logits.argmax(-1).tolist()]
    assert plain == [r.label for r in classify(TEXTS)]


def test_card_metadata_and_model_index_equal_the_eval_json(dry_run, evals):
    from huggingface_hub import ModelCard, metadata_load

    card = ModelCard.load(dry_run / "README.md")
    data = card.data.to_dict()
    assert data["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert data["base_model_relation"] == "adapter"
    assert data["library_name"] == "peft" and data["pipeline_tag"] == "text-classification"
    assert data["license"] == "apache-2.0" and "lmdemo" in data["tags"]

    meta = metadata_load(dry_run / "README.md")
    [entry] = meta["model-index"]
    assert entry["name"] == "sentiment-minilm"
    saved = [json.loads(Path(p).read_text()) for p in evals]
    metrics = [m for result in entry["results"] for m in result["metrics"]]
    for ev in saved:
        kind = "base model" if ev["adapter"] is None else "(adapter)"
        for name, value in ev["metrics"].items():
            [m] = [m for m in metrics if m["type"] == name and kind in m["name"]]
            assert m["value"] == value
    assert len(metrics) == sum(len(ev["metrics"]) for ev in saved)
    assert {r.metric_value for r in card.data.eval_results} == {v for ev in saved for v in ev["metrics"].values()}


def test_dry_run_refuses_a_non_empty_folder_and_a_bad_repo_id(tmp_path, dry_run):
    with pytest.raises(InputError, match="not empty"):
        adapters.push(DEFAULT_ADAPTER, "alice/x", dry_run=dry_run)
    with pytest.raises(InputError, match="USER/NAME"):
        adapters.push(DEFAULT_ADAPTER, "no-slash", dry_run=tmp_path / "a")
    with pytest.raises(InputError, match="not valid"):
        adapters.push(DEFAULT_ADAPTER, "alice/bad name!", dry_run=tmp_path / "b")
    with pytest.raises(InputError, match="not JSON"):
        (tmp_path / "bad.json").write_text("{oops")
        adapters.push(DEFAULT_ADAPTER, "alice/x", dry_run=tmp_path / "c", eval_paths=[tmp_path / "bad.json"])


def test_push_creates_the_repo_and_uploads_the_dry_run_files(online, dry_run, evals, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    result = adapters.push(DEFAULT_ADAPTER, "alice/sentiment-minilm", token=TOKEN, eval_paths=evals, private=True)
    repo = online.repos["alice/sentiment-minilm"]
    assert repo["type"] == "model" and repo["private"] is True
    assert sorted(repo["files"]) == sorted(p.name for p in dry_run.iterdir()) == sorted(result.files)
    for name in ("adapter_model.safetensors", "adapter_config.json", "lmdemo.json"):
        assert repo["files"][name] == (dry_run / name).read_bytes()
    assert repo["files"]["README.md"].decode() == (dry_run / "README.md").read_text()
    assert all(r["authorization"] == f"Bearer {TOKEN}" for r in online.requests if r["method"] == "POST")
    out, err = capfd.readouterr()
    assert TOKEN not in out + err + caplog.text


def test_a_refused_token_is_a_clear_error_that_never_shows_the_token(online, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    online.refuse_token = TOKEN
    with pytest.raises(hub.HubError, match="token was refused") as info:
        adapters.push(DEFAULT_ADAPTER, "alice/refused", token=TOKEN)
    out, err = capfd.readouterr()
    assert TOKEN not in str(info.value) + out + err + caplog.text


def test_the_ui_push_never_echoes_the_token(online, caplog):
    import gradio as gr

    from webui import handlers

    caplog.set_level(logging.DEBUG)
    message, card = handlers.share_push(DEFAULT_ADAPTER, "alice/from-ui", False, TOKEN)
    assert "alice/from-ui" in message and TOKEN not in message and card is None
    assert "README.md" in online.repos["alice/from-ui"]["files"]
    online.refuse_token = TOKEN
    with pytest.raises(gr.Error) as info:
        handlers.share_push(DEFAULT_ADAPTER, "alice/from-ui", False, TOKEN)
    assert "refused" in str(info.value) and TOKEN not in str(info.value) + caplog.text


def test_pull_an_adapter_by_id_loads_it_on_its_base(online, dry_run):
    adapters.push(DEFAULT_ADAPTER, "alice/sentiment-minilm", token=TOKEN)
    model, folder = adapters.resolve_pick("alice/sentiment-minilm")
    assert model == "all-minilm-l6-v2" and (Path(folder) / "adapter_model.safetensors").is_file()
    pulled = classify(TEXTS, model="alice/sentiment-minilm")
    local = classify(TEXTS)
    assert [r.label for r in pulled] == [r.label for r in local]
    assert [round(r.score, 4) for r in pulled] == [round(r.score, 4) for r in local]
    # A model repo (no adapter_config.json) is not taken for an adapter.
    online.repos["bob/plain-model"] = {"type": "model", "private": False, "files": {"config.json": b"{}"}}
    assert adapters.resolve_pick("bob/plain-model") == ("bob/plain-model", None)


def test_pull_offline_is_a_clear_error():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    with pytest.raises(ModelNotFoundError, match="offline"):
        classify(["hello"], model="nobody/never-pushed")
    with pytest.raises(AdapterError, match="offline"):
        classify(["hello"], adapter="nobody/never-pushed")


def test_cli_push_dry_run_and_offline_push(evals, tmp_path, prepared):
    env = dict(os.environ, HF_TOKEN=TOKEN)
    cmd = [sys.executable, "-m", "lmdemo", "push", DEFAULT_ADAPTER, "--repo-id", "alice/cli"]
    dry = subprocess.run(cmd + ["--dry-run", str(tmp_path / "out"), "--eval", str(evals[0])], capture_output=True,
                         text=True, env=env, cwd=ROOT)
    assert dry.returncode == 0, dry.stderr
    assert (tmp_path / "out" / "README.md").is_file() and "dry run" in dry.stdout
    offline = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    assert offline.returncode == 2 and "offline" in offline.stderr and "Traceback" not in offline.stderr
    assert TOKEN not in dry.stdout + dry.stderr + offline.stdout + offline.stderr


# ---------------------------------------------------------------- Space

def _requirement_pins() -> dict[str, str]:
    return space.pinned(ROOT / "requirements.txt")


@pytest.mark.parametrize("readme", ["source", "built"])
def test_space_front_matter(readme, tmp_path):
    if readme == "built":
        space.build(tmp_path / "space")
        path = tmp_path / "space" / "README.md"
    else:
        path = ROOT / "spaces" / "README.md"
    data = space.front_matter(path)
    assert space.check_front_matter(data) == []
    assert data["sdk_version"] == _requirement_pins()["gradio"]
    assert data["app_file"] == "app.py" and isinstance(data["python_version"], str)
    assert all(isinstance(m, str) and m.count("/") == 1 for m in data["models"])


def test_space_requirements_match_the_repo_pins():
    pins, space_pins = _requirement_pins(), space.pinned(ROOT / "spaces" / "requirements.txt")
    test_only = {"pytest", "playwright", "openai"}
    assert {k: v for k, v in pins.items() if k not in test_only} == {k: v for k, v in space_pins.items() if k in pins}
    assert not test_only & set(space_pins)


def test_demo_mode_caps_training(monkeypatch):
    from lmdemo.train import worker as jobs
    from lmdemo.config import DEMO_LIMITS, Settings, set_settings

    rows = [{"text": f"t{i}", "label": "a"} for i in range(1000)]
    set_settings(Settings.from_env(dict(os.environ, LMDEMO_DEMO_MODE="1")))
    try:
        train, val, config, notes = jobs.demo_limits("sft", rows, rows, {"epochs": 10.0, "output_dir": "x"})
    finally:
        set_settings(None)
    assert len(train) == DEMO_LIMITS.max_train_rows and len(val) < len(rows)
    assert config["epochs"] == DEMO_LIMITS.max_epochs and config["max_steps"] == DEMO_LIMITS.max_steps
    assert len(notes) == 3
    assert jobs.demo_limits("sft", rows, rows, {"epochs": 10.0}) == (rows, rows, {"epochs": 10.0}, [])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_built_space_starts_offline_and_answers(prepared, settings, tmp_path):
    from gradio_client import Client

    folder = tmp_path / "space"
    files = space.build(folder)
    assert {"app.py", "README.md", "requirements.txt", "lmdemo/data/adapters/sentiment-minilm/adapter_model.safetensors",
            "lmdemo/data/eval/sentiment.jsonl", "webui/app.py"} <= set(files)
    assert not any(f.startswith(("tests/", "bench/")) or "__pycache__" in f for f in files)
    port = _free_port()
    # Only the built folder is importable: the repo checkout is not on the path.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1", LMDEMO_HOME=str(settings.home),
               HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        client = None
        while time.time() < deadline and proc.poll() is None:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:  # not listening yet
                time.sleep(1)
        assert client is not None, proc.stdout.read() if proc.poll() is not None else "no answer in 120 s"
        out = client.predict(text="A wonderful, heartfelt film.", api_name="/sentiment")
        assert out["label"] == "positive"
        import urllib.request

        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/config").read().decode()
        assert "Demo mode" in page  # the Space entry point turns demo mode on
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_space_entry_point_sets_demo_mode_and_int8_decoding():
    env = {k: v for k, v in os.environ.items() if k not in ("LMDEMO_DEMO_MODE", "LMDEMO_FASTGEN_WEIGHTS")}
    env["PYTHONPATH"] = str(ROOT)
    code = ("import runpy; runpy.run_path('spaces/app.py'); from lmdemo.config import get_settings; "
            "s = get_settings(); print(s.demo_mode, s.fastgen_weights)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "int8"], out.stderr[-2000:]
    env["LMDEMO_FASTGEN_WEIGHTS"] = "exact"  # a Space variable wins
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "exact"], out.stderr[-2000:]


def test_an_adapter_without_a_known_base_needs_base_model(tmp_path):
    import shutil

    folder = tmp_path / "foreign"
    shutil.copytree(DEFAULT_ADAPTER, folder, ignore=shutil.ignore_patterns("lmdemo.json", "eval-*.json"))
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "some-local-model")
    (folder / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterError, match="--base-model"):
        adapters.push(folder, "alice/foreign", dry_run=tmp_path / "a")
    assert not (tmp_path / "a").exists()
    adapters.push(folder, "alice/foreign", dry_run=tmp_path / "b", base_model="org/base-model")
    assert json.loads((tmp_path / "b" / "adapter_config.json").read_text())["base_model_name_or_path"] == "org/base-model"
    assert "base_model: org/base-model" in (tmp_path / "b" / "README.md").read_text()


def test_demo_mode_never_sends_the_hosts_token(online, monkeypatch, settings):
    """A Space owner's HF_TOKEN is set; visitors' pushes need their own token and their Hub reads go anonymous."""
    from lmdemo.config import Settings, set_settings

    host = "hf_hostSecretToken0000000000000000"
    adapters.push(DEFAULT_ADAPTER, "alice/sentiment-minilm", token=TOKEN)  # the repo a visitor will read
    monkeypatch.setenv("HF_TOKEN", host)
    online.requests.clear()
    set_settings(Settings(home=settings.home, demo_mode=True, allowed_models="alice/sentiment-minilm"))
    try:
        with pytest.raises(hub.HubError, match="your own write token"):
            adapters.push(DEFAULT_ADAPTER, "alice/visitor", token=None)
        model, folder = adapters.resolve_pick("alice/sentiment-minilm")
        assert model == "all-minilm-l6-v2" and folder
        assert online.requests, "the pull reached the loopback Hub"
        assert not any(host in r["authorization"] for r in online.requests), online.requests
        adapters.push(DEFAULT_ADAPTER, "alice/visitor", token=TOKEN)  # the visitor's own token works
        assert "alice/visitor" in online.repos
        assert not any(host in r["authorization"] for r in online.requests)
    finally:
        set_settings(settings)
    # Outside demo mode the operator's own token is used, as before: the check above can fail.
    online.requests.clear()
    hub._PULLED.clear()
    adapters.push(DEFAULT_ADAPTER, "alice/operator", token=None)
    assert any(host in r["authorization"] for r in online.requests)


def test_demo_mode_loads_only_builtins_and_the_allow_list(online, settings, tmp_path):
    """Refused before any Hub request or disk read; the operator's LMDEMO_ALLOWED_MODELS opens a door."""
    from lmdemo.config import Settings, set_settings
    from lmdemo.errors import LmdemoError
    from lmdemo.jobs.generation import GenerationRequest, generate
    from lmdemo.models.loading import load

    adapters.push(DEFAULT_ADAPTER, "alice/sentiment-minilm", token=TOKEN)
    online.requests.clear()
    set_settings(Settings(home=settings.home, demo_mode=True))
    try:
        for name in ("Qwen/Qwen2.5-72B", str(settings.models_dir / "all-minilm-l6-v2"), "alice/sentiment-minilm"):
            with pytest.raises(LmdemoError, match="only these models"):
                load(name, head="encoder")
        with pytest.raises(LmdemoError, match="only these models"):
            generate(GenerationRequest("hi", model="Qwen/Qwen2.5-72B"))
        with pytest.raises(LmdemoError, match="adapters folder only"):
            adapters.adapter_dir(str(tmp_path))
        assert online.requests == []  # nothing reached the Hub
        assert classify(TEXTS)[0].label  # the built-ins and the bundled adapter still work
        set_settings(Settings(home=settings.home, demo_mode=True, allowed_models="alice/sentiment-minilm"))
        assert classify(TEXTS, model="alice/sentiment-minilm")[0].label == classify(TEXTS)[0].label
        assert online.requests  # the allowed id was fetched
    finally:
        set_settings(settings)


def test_an_oversized_hub_model_is_refused_before_any_download(online, settings):
    """The Hub's file sizes are asked first: a 140 GB repo is refused and no weights file is requested."""
    from lmdemo.errors import LmdemoError
    from lmdemo.models.loading import load

    config = json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}).encode()
    online.repos["bigcorp/huge-model"] = {"type": "model", "private": False,
                                          "files": {"config.json": config, "model.safetensors": b"x" * 16},
                                          "sizes": {"model.safetensors": 140 * 2**30}}
    online.requests.clear()
    with pytest.raises(LmdemoError, match=r"143,360 MB of weights; this app loads at most 8,192 MB"):
        load("bigcorp/huge-model")
    assert not any("model.safetensors" in r["path"] and "/resolve/" in r["path"] for r in online.requests)
    assert any(r["path"].startswith("/api/models/bigcorp/huge-model") for r in online.requests)
    # the same kind of repo under the limit gets past the check (and fails later, on its fake weights)
    online.repos["bigcorp/huge-model"]["sizes"] = {}
    with pytest.raises(LmdemoError) as info:
        load("bigcorp/huge-model")
    assert "MB of weights" not in str(info.value)
