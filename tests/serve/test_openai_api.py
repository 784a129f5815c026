"""The OpenAI-compatible API, driven by the official `openai` client: against `python app.py` (same port as the
page), and against `python -m lmdemo serve --api-only` on a shared Space with an API key."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = "openai-test-sft"
KEY = "test-key-9f2c"
PROMPT = [{"role": "user", "content": "Name three colours of the rainbow."}]


def make_home(root: Path, settings) -> Path:
    """A home that shares the prepared built-ins (links) and has its own adapters folder."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("models", "downloads"):
        (root / sub).symlink_to(getattr(settings, f"{sub}_dir"), target_is_directory=True)
    return root


def save_sft_adapter(folder: Path) -> None:
    """A LoRA adapter on SmolLM2 whose B matrices are not zero, so it changes the model's replies."""
    from peft import LoraConfig, get_peft_model

    from lmdemo.models.adapters import save_adapter
    from lmdemo.models.loading import load

    base = load("smollm2-135m-instruct").model
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    try:
        save_adapter(model, folder, {"task": "sft", "base_model": "smollm2-135m-instruct"})
    finally:
        model.unload()  # the cached base goes back to its own weights


def start(args: list[str], env: dict, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {KEY}"},
                         timeout=2).status_code in (200, 401):
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def served(prepared, settings, tmp_path_factory):
    """`python app.py` on a free port, with a home holding one LM adapter."""
    home = make_home(tmp_path_factory.mktemp("openai-home"), settings)
    save_sft_adapter(home / "adapters" / ADAPTER)
    port = free_port()
    env = dict(os.environ, LMDEMO_HOME=str(home), GRADIO_SERVER_PORT=str(port), HF_HUB_OFFLINE="1")
    env.pop("LMDEMO_API_KEY", None)
    proc = start(["app.py"], env, port)
    yield f"http://127.0.0.1:{port}"
    stop(proc)


@pytest.fixture(scope="module")
def api(served):
    return openai.OpenAI(base_url=served + "/v1", api_key="unused", max_retries=0, timeout=300)


def chat(api, **kwargs):
    kwargs = {"model": "smollm2-135m-instruct", "messages": PROMPT, "temperature": 0, "max_tokens": 40, **kwargs}
    return api.chat.completions.create(**kwargs)


def streamed(api, **kwargs):
    chunks = list(chat(api, stream=True, stream_options={"include_usage": True}, **kwargs))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    return pieces, finish, chunks[-1].usage


def test_models_lists_the_builtins_and_an_adapter(api):
    ids = [m.id for m in api.models.list()]
    assert {"smollm2-135m-instruct", "gemma-3-270m", ADAPTER} <= set(ids)
    assert "all-minilm-l6-v2" not in ids  # an encoder cannot answer a chat
    assert api.models.retrieve(ADAPTER).owned_by == "local"


def test_a_streamed_chat_arrives_in_pieces_and_equals_the_whole_reply(api):
    whole = chat(api)
    pieces, finish, usage = streamed(api)
    text = whole.choices[0].message.content
    assert len(pieces) >= 3 and "".join(pieces) == text and text.strip()
    assert finish == [whole.choices[0].finish_reason]
    assert whole.usage.completion_tokens > 0 and whole.usage.prompt_tokens > 0
    assert usage.model_dump() == whole.usage.model_dump()
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens


def test_the_reply_is_the_generation_jobs_with_the_same_defaults(api, prepared):
    from lmdemo.engine.streaming import GenerationParams
    from lmdemo.jobs.generation import GenerationRequest, generate

    ours = generate(GenerationRequest(PROMPT[0]["content"], params=GenerationParams(temperature=0, max_new_tokens=40)))
    reply = chat(api)
    assert reply.choices[0].message.content == ours.text
    assert reply.usage.completion_tokens == ours.stats.tokens


def test_stop_ends_the_text_before_the_stop_string(api):
    text = chat(api).choices[0].message.content
    words = text.split()
    cut = words[len(words) // 2]
    expected = text[: text.index(cut)]
    reply = chat(api, stop=[cut, "@@never@@"])
    assert reply.choices[0].message.content == expected and reply.choices[0].finish_reason == "stop"
    pieces, _, _ = streamed(api, stop=cut)
    assert "".join(pieces) == expected


def test_max_tokens_ends_with_length(api):
    reply = chat(api, max_tokens=3)
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 3


def test_an_adapter_id_answers_with_the_adapter(api):
    base = chat(api).choices[0].message.content
    tuned = chat(api, model=ADAPTER).choices[0].message.content
    assert tuned != base


def test_completions_continue_a_base_models_text(api):
    reply = api.completions.create(model="gemma-3-270m", prompt="The capital of France is", max_tokens=8,
                                   temperature=0)
    text = reply.choices[0].text
    assert text.strip() and reply.usage.completion_tokens > 0
    chunks = [c.choices[0].text for c in api.completions.create(model="gemma-3-270m", prompt="The capital of France is",
                                                                  max_tokens=8, temperature=0, stream=True) if c.choices]
    assert "".join(chunks) == text


@pytest.mark.parametrize("kwargs, error, param", [
    ({"model": "no-such-model"}, openai.NotFoundError, "model"),
    ({"temperature": 5}, openai.BadRequestError, "temperature"),
    ({"top_p": 0}, openai.BadRequestError, "top_p"),
    ({"max_tokens": 0}, openai.BadRequestError, "max_tokens"),
    ({"n": 2}, openai.BadRequestError, "n"),
    ({"stop": ["a"] * 5}, openai.BadRequestError, "stop"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, openai.BadRequestError, "messages"),
    ({"messages": [{"role": "tool", "content": "hi"}]}, openai.BadRequestError, "messages"),
    ({"logprobs": True}, openai.BadRequestError, "logprobs"),
])
def test_bad_requests_are_openai_errors(api, kwargs, error, param):
    with pytest.raises(error) as info:
        chat(api, **kwargs)
    body = info.value.body
    assert body["param"] == param and body["message"] and "\n" not in body["message"]
    assert "Traceback" not in body["message"]


def test_a_base_model_in_chat_is_a_clear_error(api):
    with pytest.raises(openai.BadRequestError) as info:
        chat(api, model="gemma-3-270m")
    assert "completion" in info.value.body["message"]


def test_unknown_endpoint_and_bad_json_are_openai_errors(served):
    r = httpx.get(served + "/v1/embeddings")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
    r = httpx.post(served + "/v1/chat/completions", content=b"{not json")
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]


def test_the_page_still_serves_beside_the_api(served):
    assert httpx.get(served + "/").status_code == 200
    assert httpx.get(served + "/gradio_api/info").status_code == 200


def test_api_calls_and_the_pages_jobs_take_turns_on_the_model(api, served):
    """A long API stream holds the model slot: a short call sent meanwhile (API or the gradio API) finishes
    after it, not beside it."""
    from gradio_client import Client

    done: dict[str, float] = {}
    first_piece = threading.Event()

    def long_stream():
        for chunk in chat(api, max_tokens=120, stream=True, messages=[
                {"role": "user", "content": "Write a long story about a dragon."}]):
            first_piece.set()
        done["long"] = time.perf_counter()

    worker = threading.Thread(target=long_stream)
    worker.start()
    assert first_piece.wait(120)
    chat(api, max_tokens=2)
    done["short_api"] = time.perf_counter()
    worker.join()
    assert done["short_api"] > done["long"]

    worker = threading.Thread(target=long_stream)
    first_piece.clear()
    worker.start()
    assert first_piece.wait(120)
    Client(served, verbose=False).predict("Hi", "chat", "", 2, 0, api_name="/generate")
    done["short_page"] = time.perf_counter()
    worker.join()
    assert done["short_page"] > done["long"]


def test_a_cancelled_page_job_gives_the_model_back_to_the_api(api, served):
    """A gradio job cancelled mid-stream (a closed tab, Stop) leaves the model slot: the next API call runs."""
    from gradio_client import Client

    # counting to 1000 runs to the 1500-token cap: about a minute of decoding here if nothing stopped it
    job = Client(served, verbose=False).submit("Count from 1 to 1000, separated by commas.", "chat", "", 1500, 0,
                                               api_name="/generate")
    deadline = time.time() + 120
    while not job.outputs() and time.time() < deadline:
        time.sleep(0.2)
    assert job.outputs(), "the page's job never started"
    job.cancel()
    start = time.perf_counter()
    assert chat(api, max_tokens=2).usage.completion_tokens == 2
    assert time.perf_counter() - start < 20  # not the rest of the count


def test_lmdemo_runs_on_its_own_api_in_another_process(served, prepared):
    """lmdemo as the client of another lmdemo's /v1 (the remote-engine path): the same greedy reply as here."""
    from lmdemo.engine.streaming import GenerationParams
    from lmdemo.jobs.generation import GenerationRequest, generate, generate_stream
    from lmdemo.jobs.translation import TranslationRequest, translate

    params = GenerationParams(temperature=0, max_new_tokens=30)
    engine = f"openai:{served}/v1#smollm2-135m-instruct"
    local = generate(GenerationRequest(PROMPT[0]["content"], params=params))
    pieces = [r.text for r in generate_stream(GenerationRequest(PROMPT[0]["content"], model=engine, params=params))]
    assert len(set(pieces)) >= 3 and pieces[-1] == local.text
    remote = generate(GenerationRequest(PROMPT[0]["content"], model=engine, params=params))
    assert remote.stats.backend.startswith("openai:127.0.0.1") and remote.stats.tokens == local.stats.tokens
    out = translate(TranslationRequest("Good morning.", "en", "fr", model=engine))
    assert out.translation.strip() and out.backend == remote.stats.backend


# ---------------------------------------------------------------- API only, shared Space, key

@pytest.fixture(scope="module")
def shared_api(prepared, settings, tmp_path_factory):
    """`lmdemo serve --api-only` in demo mode with LMDEMO_API_KEY; a visitor owns one adapter, the operator one."""
    from lmdemo.serve import visitors

    home = make_home(tmp_path_factory.mktemp("openai-shared"), settings)
    visitor = "0123456789abcdef0123456789abcdef"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(settings, "demo_mode", True)
        owner = visitors.owner(None, visitor, None)
    save_sft_adapter(home / "adapters" / "visitors" / owner / "visitors-own")
    save_sft_adapter(home / "adapters" / "operators-shared")
    port = free_port()
    env = dict(os.environ, LMDEMO_HOME=str(home), LMDEMO_DEMO_MODE="1", LMDEMO_API_KEY=KEY, HF_HUB_OFFLINE="1")
    proc = start(["-m", "lmdemo", "serve", "--api-only", "--port", str(port)], env, port)
    yield f"http://127.0.0.1:{port}", visitor
    stop(proc)


def test_the_key_is_required_when_set(shared_api):
    url, _ = shared_api
    for key in ("wrong", ""):
        with pytest.raises(openai.AuthenticationError) as info:
            openai.OpenAI(base_url=url + "/v1", api_key=key or "x", max_retries=0).models.list()
        assert info.value.body["code"] == "invalid_api_key"


def test_a_shared_api_shows_each_caller_only_its_own_adapters(shared_api):
    url, visitor = shared_api
    anonymous = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    owner = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0,
                          default_headers={"Cookie": f"lmdemo_visitor={visitor}"})
    seen = {m.id: m.owned_by for m in anonymous.models.list()}
    assert "visitors-own" not in seen and seen["operators-shared"] == "shared"
    assert {m.id: m.owned_by for m in owner.models.list()}["visitors-own"] == "you"
    with pytest.raises(openai.NotFoundError):
        chat(anonymous, model="visitors-own", max_tokens=2)
    assert chat(owner, model="visitors-own", max_tokens=2).choices[0].message.content is not None
    with pytest.raises(openai.BadRequestError) as info:
        chat(anonymous, model="/etc")
    assert "not paths" in info.value.body["message"]


def test_an_oversized_body_is_refused_in_openai_shape(shared_api):
    url, _ = shared_api
    big = [{"role": "user", "content": "x" * (5 * 2**20)}]
    r = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                   content=json.dumps({"model": "smollm2-135m-instruct", "messages": big}))
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
