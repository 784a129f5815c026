"""Two visitors of a shared Space (demo mode), each a gradio_client session: A's adapters, training run, rows and
results are invisible and untouchable for B, and B's attempts are refused with a clear message."""

import json
import shutil
import time
from importlib.resources import files
from pathlib import Path

import pytest
from gradio_client import Client



def assert_clear(message: str) -> None:
    """One line for a person, no traceback."""
    assert message.strip() and "\n" not in message.strip() and "Traceback" not in message, message

NAME = "owner-topics"
TOPICS = Path(str(files("lmdemo.data").joinpath("samples", "topics_train.jsonl")))


@pytest.fixture(scope="module")
def demo(app_url, settings):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(settings, "demo_mode", True)
        yield


@pytest.fixture(scope="module")
def visitors(demo, app_url):
    return Client(app_url, verbose=False), Client(app_url, verbose=False)


def refused(client, endpoint, *args, match=""):
    with pytest.raises(Exception) as info:
        client.predict(*args, api_name=endpoint)
    message = str(info.value)
    assert match in message, message
    assert_clear(message)
    return message


@pytest.fixture(scope="module")
def trained(visitors):
    """A trains a small classifier; the state of B's view is recorded while A's run holds the slot."""
    a, b = visitors
    started = a.predict("classification", "", "topics (4 classes)", "", "", 1, 5e-3, 8, "", None, 0, NAME,
                        api_name="/finetune_start")
    assert started["state"] == "starting" and started["output_dir"] == "" and "visitors" not in str(started)
    seen_by_b = b.predict(api_name="/finetune_status")
    cancel_by_b = refused(b, "/finetune_cancel", match="another visitor's")
    start_by_b = refused(b, "/finetune_start", "classification", "", "topics (4 classes)", "", "", 1, 5e-3, 8, "",
                         None, 0, "b-run", match="busy with another visitor's run")
    deadline = time.time() + 600
    while time.time() < deadline:
        status = a.predict(api_name="/finetune_status")
        if status["state"] not in ("starting", "running"):
            break
        time.sleep(2)
    assert status["state"] == "finished", status
    yield {"a_status": status, "seen_by_b": seen_by_b, "cancel_by_b": cancel_by_b, "start_by_b": start_by_b,
           "b_after": b.predict(api_name="/finetune_status")}
    try:
        a.predict(NAME, api_name="/adapters_remove")
    except Exception:  # noqa: BLE001 - removed by the test already
        pass


def test_b_sees_only_that_the_slot_is_busy(trained):
    seen = trained["seen_by_b"]
    assert seen["state"] == "idle" and seen["slot_busy"] is True
    assert seen["name"] == "" and seen["losses"] == [] and seen["comparison"] == {}
    # A's finished run, its losses and its validation rows side by side, are A's alone
    a, b = trained["a_status"], trained["b_after"]
    assert a["name"] == NAME and a["losses"] and a["comparison"]["examples"]
    assert b["state"] == "idle" and not b["losses"] and not b["comparison"]


def test_b_cannot_cancel_or_take_the_slot(trained):
    assert "cancel only your own" in trained["cancel_by_b"]
    assert "try again" in trained["start_by_b"]


def test_adapters_are_listed_for_their_owner_only(trained, visitors):
    a, b = visitors
    mine = {x["name"]: x for x in a.predict(api_name="/adapters")}
    assert mine[NAME]["owned"] is True
    theirs = {x["name"]: x for x in b.predict(api_name="/adapters")}
    assert NAME not in theirs
    assert theirs and not any(x["owned"] for x in theirs.values())  # only the shared (bundled) ones


def test_b_cannot_use_remove_push_or_dry_run_a_s_adapter(trained, visitors):
    a, b = visitors
    refused(b, "/adapters_remove", NAME, match="not found among your adapters")
    refused(b, "/share_dry_run", NAME, "someone/copy", match="not found among your adapters")
    refused(b, "/share_push", NAME, "someone/copy", False, "hf_visitor_token", match="not found among your adapters")
    # by name it is not B's adapter; in demo mode an unknown name is a model id outside the allow-list
    refused(b, "/sentiment", "What a match!", NAME, match=NAME)
    # nor by its folder: a visitor names things, the server's paths are refused
    from lmdemo.config import get_settings

    folders = list((get_settings().adapters_dir / "visitors").glob(f"*/{NAME}"))
    assert len(folders) == 1
    refused(b, "/sentiment", "What a match!", str(folders[0]), match="not paths on the server")
    refused(b, "/evaluate", "classification", "", f"default, {folders[0]}", 5, "", match="not paths on the server")
    assert folders[0].is_dir()  # still there after all of B's attempts


def test_a_uses_and_removes_its_own_adapter(trained, visitors):
    a, b = visitors
    labels = {json.loads(line)["label"] for line in TOPICS.read_text().splitlines() if line.strip()}
    res = a.predict("The striker scored twice in the final.", NAME, api_name="/sentiment")
    assert res["label"] in labels, res  # A's topic classifier, not the bundled positive/negative one
    refused(a, "/adapters_merge", NAME, match="off on this shared app")
    left = a.predict(NAME, api_name="/adapters_remove")
    assert NAME not in {x["name"] for x in left}


def test_a_visitor_keeps_a_bounded_number_of_adapters(demo):
    from lmdemo.config import DEMO_LIMITS
    from lmdemo.errors import InputError
    from lmdemo.models.adapters import BUNDLED_DIR, new_adapter_path
    from lmdemo.train.plan import FinetuneRequest
    from webui import handlers as h

    class Session:  # what gradio passes as the request of a visitor without login
        username, session_hash = None, "quota-session"

    owner = h.owner_of(Session())
    made = []
    try:
        for i in range(DEMO_LIMITS.max_adapters):
            made.append(new_adapter_path(f"q{i}", owner=owner))
            shutil.copytree(BUNDLED_DIR / "sentiment-minilm", made[-1])
        with pytest.raises(InputError, match=f"{DEMO_LIMITS.max_adapters} adapters at most"):
            h.start_job(FinetuneRequest(task="classification", sample="topics (4 classes)", output="one-more"),
                        Session())
    finally:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)


def test_an_lstm_is_its_trainers_alone(demo, visitors):
    """A's LM-lab LSTM scores for A; B holding its id gets the same answer as for an id that never existed, and
    the shared demo caps a training run's seconds."""
    a, b = visitors
    trained = a.predict("", 20, 64, 32, 0.01, 300.0, 0, api_name="/lstm_train")
    assert trained["steps"] == 20 and "at most 30 s" in trained["note"]
    mine = a.predict("the cat sat on the mat.", trained["model_id"], api_name="/lstm_compare")
    assert mine["lstm"]["perplexity"] > 0
    theirs = refused(b, "/lstm_compare", "the cat sat on the mat.", trained["model_id"], match="No trained LSTM")
    never = refused(b, "/lstm_compare", "the cat sat on the mat.", "0" * 12, match="No trained LSTM")
    assert theirs.replace(trained["model_id"], "ID") == never.replace("0" * 12, "ID")
