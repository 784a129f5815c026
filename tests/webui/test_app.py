"""The app, driven through gradio_client exactly as a user's script would."""

import json
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
ENDPOINTS = {"/generate", "/sentiment", "/sentiment_batch", "/summarize", "/translate", "/perplexity",
             "/next_tokens", "/bigram", "/evaluate", "/finetune_check", "/finetune_estimate", "/finetune_start",
             "/finetune_status", "/finetune_cancel", "/models", "/models_prepare", "/adapters", "/adapters_remove",
             "/adapters_merge", "/share_dry_run", "/share_push", "/attention", "/positions", "/lstm_train",
             "/lstm_compare"}
REQUIRED = {"prompt": "Say hello.", "text": "The cat sat on the mat. It was happy.", "prefix": "The cat",
            "corpus": "the cat sat\nthe dog sat", "texts": ["I love it.", "Awful."],
            "adapter": "sentiment-minilm", "repo_id": "alice/x", "model_id": None}  # model_id: set once trained
# Left out of the every-endpoint call: they change the machine (train, delete, write, upload) or take minutes;
# each has its own test (here, in test_finetune/test_hub) or is a thin call of one that has.
MUTATING = {"/finetune_start", "/finetune_cancel", "/models_prepare", "/adapters_remove", "/adapters_merge",
            "/share_push"}
# Inputs the every-endpoint call adds beyond the required ones: a shorter run, or data the endpoint needs.
EXTRA = {"/generate": {"max_new_tokens": 16}, "/evaluate": {"limit": 5},
         "/finetune_check": {"sample": "topics (4 classes)"}, "/finetune_estimate": {"sample": "topics (4 classes)"},
         "/lstm_train": {"steps": 20}}


def readme_api() -> dict[str, tuple[list[tuple[str, object]], str]]:
    """The README's API table: endpoint -> ([(parameter, default or REQUIRED_MARK)], returns cell)."""
    section = README.read_text().split("\n## API", 1)[1].split("\n## ", 1)[0]
    table = {}
    for row in re.findall(r"^\| `(/\w+)` \|(.*)\|(.*)\|$", section, flags=re.M):
        endpoint, inputs, returns = (cell.strip() for cell in row)
        params = [(name, json.loads(default) if default else REQUIRED_MARK)
                  for name, default in re.findall(r'`(\w+)`(?:=("[^"]*"|-?[\d.]+(?:e-?\d+)?|true|false|null))?',
                                                  inputs)]
        table[endpoint] = (params, returns.replace("`", ""))
    return table


REQUIRED_MARK = object()


def test_the_api_is_exactly_the_readme_table(client):
    """Names, order, defaults of every endpoint as documented, and nothing undocumented."""
    documented = readme_api()
    assert set(documented) == ENDPOINTS
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(named) == set(documented)  # no extra public endpoint either
    for endpoint, (params, _) in documented.items():
        actual = [(p["parameter_name"], p["parameter_default"] if p["parameter_has_default"] else REQUIRED_MARK)
                  for p in named[endpoint]["parameters"]]
        assert actual == params, endpoint
    assert named["/sentiment_batch"]["parameters"][0]["python_type"]["type"] == "list[str]"


def test_every_endpoint_returns_the_documented_shape(client):
    """Each endpoint called with its required inputs only, as a script would; the result has the README's shape."""
    called, trained_lstm = set(), {}
    for endpoint, (params, returns) in readme_api().items():
        if endpoint in MUTATING:
            continue
        kwargs = {name: REQUIRED[name] for name, default in params if default is REQUIRED_MARK}
        kwargs.update(EXTRA.get(endpoint, {}))  # the defaults themselves are checked above
        if endpoint == "/lstm_compare":  # the id of the LSTM /lstm_train (earlier in the table) just trained
            kwargs["model_id"] = trained_lstm["model_id"]
        out = client.predict(api_name=endpoint, **kwargs)
        assert_shape(endpoint, out, returns)
        if endpoint == "/lstm_train":
            trained_lstm = out
        called.add(endpoint)
    assert called == ENDPOINTS - MUTATING


def assert_shape(endpoint: str, out, returns: str) -> None:
    """The result's keys are the README cell's quoted names (a list of such dicts for "list of {...}")."""
    keys = set(re.findall(r'"(\w+)"', returns))
    if returns.startswith("list of {"):
        assert isinstance(out, list) and out and all(set(item) == keys for item in out), (endpoint, out)
    else:
        assert returns.startswith("{")
        assert isinstance(out, dict) and set(out) == keys, (endpoint, out)


def test_the_readme_example_runs(client):
    code = README.read_text().split("\n## API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    call = next(line for line in code.splitlines() if line.startswith("c.predict("))
    out = eval(call, {"c": client})  # the README's own call, verbatim
    assert "Paris" in out["text"]


def test_generate(client):
    out = client.predict(prompt="What is the capital of France?", max_new_tokens=12, temperature=0,
                         api_name="/generate")
    assert "Paris" in out["text"] and out["tokens"] > 0 and out["tokens_per_second"] > 0
    seeded = dict(prompt="Name an animal.", temperature=0.9, seed=3, max_new_tokens=8, api_name="/generate")
    assert client.predict(**seeded)["text"] == client.predict(**seeded)["text"]


def test_sentiment_single_and_batch(client):
    one = client.predict(text="Absolutely loved it, would buy again!", api_name="/sentiment")
    assert one["label"] == "positive" and one["score"] > 0.5
    many = client.predict(texts=["Awful, it broke in a day.", "Brilliant film."], api_name="/sentiment_batch")
    assert [m["label"] for m in many] == ["negative", "positive"]


def test_summarize_translate_and_lab(client):
    text = ("The museum reopened on Monday after two years of repairs. Visitors can now see the restored roof and a "
            "new gallery of local art. Entry is free for children.")
    summary = client.predict(text=text, length=1, api_name="/summarize")
    assert 0 < summary["summary_words"] < summary["input_words"]
    fr = client.predict(text="I would like a cup of coffee, please.", source="en", target="fr", api_name="/translate")
    assert "café" in fr["translation"].lower()
    ppl = client.predict(text="The cat sat on the mat.", api_name="/perplexity")
    assert ppl["perplexity"] > 1 and len(ppl["tokens"]) >= 6
    top = client.predict(prefix="The capital of France is", k=3, api_name="/next_tokens")
    assert len(top["tokens"]) == 3 and top["tokens"][0][0].strip() == "Paris"
    assert all(isinstance(t, str) and isinstance(p, float) for t, p in top["tokens"])
    cmp = client.predict(text="the cat sat", corpus="the cat sat\nthe dog sat", k=1.0, api_name="/bigram")
    assert cmp["bigram_perplexity"] > 1 and cmp["lm_perplexity"] > 1


def test_bad_input_is_a_clear_error_and_the_app_keeps_serving(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="type some text"):
        client.predict(text="   ", api_name="/sentiment")
    with pytest.raises(AppError, match="temperature"):
        client.predict(prompt="hi", temperature=-4, api_name="/generate")
    with pytest.raises(AppError, match="klingon"):
        client.predict(text="hello", source="en", target="klingon", api_name="/translate")
    with pytest.raises(AppError, match="offline"):
        client.predict(prompt="hi", model="nobody/nothing", api_name="/generate")
    assert client.predict(text="Great value.", api_name="/sentiment")["label"] == "positive"


def test_generate_streams_through_submit(client):
    """A script sees the reply grow: several partial results before the final one, which predict also returns."""
    job = client.submit(prompt="Describe a cat in one sentence.", max_new_tokens=24, temperature=0,
                        api_name="/generate")
    outputs = list(job)
    final = job.result()
    assert len(outputs) > 2, outputs  # at least two partial results before the last
    assert outputs[-1] == final and final["tokens"] > outputs[0]["tokens"]
    assert all(final["text"].startswith(o["text"].rstrip()) for o in outputs[:-1]), outputs
    assert final["finish_reason"] in ("eos", "length")


def test_evaluate_compares_two_models(client):
    out = client.predict(task="sentiment", models="default, sentiment-minilm", limit=5, api_name="/evaluate")
    assert out["task"] == "sentiment"
    assert [r["label"] for r in out["results"]] == ["default", "sentiment-minilm"]
    assert all(r["n"] == 5 and 0 <= r["metrics"]["accuracy"] <= 1 for r in out["results"]), out
    paired = out["paired"]  # the second model against the first, example by example
    assert (paired["first"], paired["second"], paired["metric"], paired["n"]) == (
        "default", "sentiment-minilm", "accuracy", 5), paired
    assert paired["wins"] + paired["losses"] + paired["ties"] == 5
    low, high = paired["ci95"]
    assert low <= paired["difference"] <= high
    accuracy = [r["metrics"]["accuracy"] for r in out["results"]]
    assert paired["difference"] == pytest.approx(accuracy[1] - accuracy[0])


def test_finetune_check_counts_rows_without_training(client):
    out = client.predict(task="classification", sample="topics (4 classes)", api_name="/finetune_check")
    assert out["train_rows"] > 0 and out["validation_rows"] > 0, out
    assert out["labels"] == ["business", "food", "science", "sport"]
    assert client.predict(api_name="/finetune_status")["state"] in ("idle", "finished", "failed", "cancelled")
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="sample set"):
        client.predict(task="classification", api_name="/finetune_check")  # neither data nor sample


def test_adapters_lists_the_bundled_ones(client):
    adapters = {a["name"]: a for a in client.predict(api_name="/adapters")}
    assert adapters["sentiment-minilm"]["bundled"] is True
    assert adapters["sentiment-minilm"]["task"] == "classification"
    assert adapters["news-summary-gemma"]["bundled"] is True  # the default one-sentence summariser
    assert adapters["news-summary-gemma"]["task"] == "sft"


def test_share_dry_run_lists_the_upload_files(client):
    out = client.predict(adapter="sentiment-minilm", repo_id="alice/x", api_name="/share_dry_run")
    assert out["dry_run"] is True and out["repo_id"] == "alice/x"
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors"} <= set(out["files"]), out["files"]
    assert "base_model_relation: adapter" in out["card"]


def test_the_evaluate_tabs_stop_stops_the_scoring(client):
    """The Evaluate tab's Stop sets its session's flag; the scoring ends before the next example."""
    import threading
    import time

    import gradio as gr

    from webui import handlers as h

    stop, outcome = h.StopEvent(), {}

    def evaluate():
        try:
            h.run_evaluation("generation", None, "default", 50, stop)
            outcome["result"] = "finished"
        except gr.Error as exc:
            outcome["result"] = exc.message

    worker = threading.Thread(target=evaluate)
    start = time.monotonic()
    worker.start()
    time.sleep(3)
    h.stop_generation(stop)
    worker.join(120)
    assert not worker.is_alive()
    assert re.search(r"Evaluation stopped after \d+ of 40 examples", outcome["result"]), outcome  # 40 rows bundled
    assert time.monotonic() - start < 60
