"""Remote OpenAI-compatible engines (lmdemo.engine.remote) against a real one on loopback: llama-cpp-python's own
server (`python -m llama_cpp.server`) on the built-in SmolLM2's GGUF file, started once for the module, with an
API key so that the key path is exercised too. The refusals that need no engine run without it.
"""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from engines import free_port, key_in_env, llama_server

from lmdemo.config import ConfigError, Settings, get_settings, set_settings
from lmdemo.engine import remote
from lmdemo.engine.streaming import GenerationParams
from lmdemo.errors import InputError, ModelNotFoundError
from lmdemo.eval import evaluation
from lmdemo.jobs.base import run_to_end
from lmdemo.jobs.generation import GenerationRequest, generate, generate_stream
from lmdemo.jobs.summarization import CHUNK_TOKENS, SummaryRequest, summarize
from lmdemo.jobs.translation import TranslationRequest, translate
from lmdemo.models import families

ROOT = Path(__file__).resolve().parents[2]
KEY = "lmdemo-test-key"
ALIAS = "smollm2"  # the id the server lists (--model_alias), instead of the GGUF's path
STORY = [{"role": "user", "content": "Write a very long story about a dragon."}]


@pytest.fixture(scope="module")
def engine(prepared):
    """The base URL of llama-cpp-python's server on SmolLM2-135M-Instruct's GGUF (key: KEY), for the module."""
    with llama_server(KEY, ALIAS) as url, key_in_env(remote.KEY_ENV, KEY):
        yield url


@pytest.fixture
def use_settings(settings):
    """Replace the process-wide settings for one test (same home), restored after."""
    def use(**kwargs) -> Settings:
        new = Settings(home=settings.home, **kwargs)
        set_settings(new)
        return new
    yield use
    set_settings(settings)


def test_chat_streams_in_pieces_and_greedy_equals_a_direct_call(engine):
    from openai import OpenAI

    params = GenerationParams(max_new_tokens=40, temperature=0)
    history = [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi! How can I help?"}]
    req = GenerationRequest("Name three colours of the rainbow.", model=f"openai:{engine}", params=params,
                            history=history, system_prompt="You are a brief assistant.")
    seen = [(r.text, r.stats.finish_reason) for r in generate_stream(req)]  # the stats object is updated in place
    texts = [text for text, _ in seen]
    assert len(set(texts)) >= 5 and all(b.startswith(a) for a, b in zip(texts, texts[1:]))  # growing, in pieces
    assert {reason for _, reason in seen[:-1]} == {"running"}
    final = run_to_end(generate_stream(req))  # greedy: the same reply again
    # The same messages and sampling settings, asked in one non-streamed call by OpenAI's own client.
    direct = OpenAI(base_url=engine, api_key=KEY).chat.completions.create(
        model=ALIAS, max_tokens=40, temperature=0, top_p=params.top_p, seed=params.seed,
        messages=[{"role": "system", "content": "You are a brief assistant."}, *history,
                  {"role": "user", "content": "Name three colours of the rainbow."}])
    assert final.text == direct.choices[0].message.content == texts[-1] and final.text.strip()
    stats = final.stats
    assert stats.backend == f"openai:127.0.0.1:{engine.split(':')[2].split('/')[0]}#{ALIAS}"
    assert stats.finish_reason == {"length": "length", "stop": "eos"}[direct.choices[0].finish_reason]
    assert stats.tokens == direct.usage.completion_tokens and stats.tokens_per_second > 0
    assert 0 < stats.first_token_seconds <= stats.seconds
    assert final.to_dict()["backend"] == stats.backend


def test_without_model_id_the_server_first_model_is_used_and_completion_mode_works(engine):
    res = generate(GenerationRequest("The capital of France is", mode="completion", model=f"openai:{engine}",
                                     params=GenerationParams(max_new_tokens=6, temperature=0)))
    assert res.text.strip() and res.stats.backend.endswith(f"#{ALIAS}") and res.stats.finish_reason == "length"


def test_stop_ends_the_stream_and_the_engine(engine):
    stop = threading.Event()
    seen = 0
    # 1,900 tokens take the engine about a minute here: had it kept generating, the next request would wait for it.
    for _, stats in remote.chat_stream(f"openai:{engine}#{ALIAS}", STORY,
                                       GenerationParams(max_new_tokens=1900, temperature=0), stop=stop):
        seen += 1
        if seen == 3:
            stop.set()
    assert stats.finish_reason == "stopped" and stats.tokens == 3
    start = time.perf_counter()
    after = generate(GenerationRequest("Say hi.", model=f"openai:{engine}",
                                       params=GenerationParams(max_new_tokens=2, temperature=0)))
    assert after.text and time.perf_counter() - start < 20


def test_summarise_and_translate_run_through_the_jobs(engine):
    model = f"openai:{engine}"
    text = ("The city council voted on Tuesday to build a new library in the old market square. Construction will "
            "start next spring and take two years. The library will have a children's floor and a café.")
    res = summarize(SummaryRequest(text, length=1, model=model))
    assert res.summary.strip() and res.chunks == 1 and res.input_tokens == remote.approx_tokens(text)
    tr = translate(TranslationRequest("The cat sleeps. The dog runs in the garden.", "en", "fr", model=model))
    assert tr.sentences == 2 and tr.translation.strip() and "\n" not in tr.translation


def test_long_text_is_summarised_in_parts_measured_without_a_tokenizer(engine):
    paragraph = ("Rivers carry water from mountains to the sea, shaping valleys and feeding farms along the way. "
                 "People have settled beside them for thousands of years.")
    text = "\n\n".join([paragraph] * (CHUNK_TOKENS * 3 // 2 // remote.approx_tokens(paragraph)))
    res = summarize(SummaryRequest(text, length=1, model=f"openai:{engine}"))
    assert res.chunks == 2 and "2 parts" in res.notes[0] and res.summary.strip()


def test_cli_generates_on_the_engine(engine):
    out = subprocess.run([sys.executable, "-m", "lmdemo", "generate", "--model", f"openai:{engine}",
                          "--max-new-tokens", "8", "--temperature", "0", "Say hello."],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, HF_HUB_OFFLINE="1", LMDEMO_HOME=str(get_settings().home)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() and f"#{ALIAS}]" in out.stderr and "8 tokens" in out.stderr


def test_evaluation_of_a_translation_set_on_the_engine(engine, tmp_path):
    rows = [{"source": "Good morning.", "reference": "Bonjour.", "source_lang": "en", "target_lang": "fr"},
            {"source": "Thank you very much.", "reference": "Merci beaucoup.", "source_lang": "en",
             "target_lang": "fr"}]
    data = tmp_path / "tiny.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    result = evaluation.run("translation", data, model=f"openai:{engine}")
    assert result.n == 2 and set(result.metrics) == {"bleu", "chrf"} and result.model == f"openai:{engine}"
    assert all(r["prediction"].strip() for r in result.predictions)
    with pytest.raises(InputError, match="needs a local model"):
        evaluation.run("generation", None, model=f"openai:{engine}", limit=1)


def test_named_backend_from_the_environment_with_its_own_key(engine, use_settings, monkeypatch):
    env = {"LMDEMO_HOME": str(get_settings().home),
           "LMDEMO_BACKENDS": f"local-llama=openai:{engine}#{ALIAS}, wrong-key=openai:{engine}"}
    settings = Settings.from_env(env)
    use_settings(backends=settings.backends)
    assert families.is_remote("local-llama") and not families.is_remote("smollm2-135m-instruct")
    res = generate(GenerationRequest("Say hi.", model="local-llama",
                                     params=GenerationParams(max_new_tokens=3, temperature=0)))
    assert res.text and res.stats.backend == "openai:local-llama"
    monkeypatch.setenv(remote.key_variable("wrong-key"), "not-the-key")  # LMDEMO_BACKEND_KEY_WRONG_KEY
    remote._MODELS.clear()
    with pytest.raises(InputError, match=r"refused the request \(HTTP 401.*LMDEMO_BACKEND_KEY_WRONG_KEY"):
        generate(GenerationRequest("Say hi.", model="wrong-key"))


def test_demo_mode_refuses_a_typed_address_and_takes_the_operators_backend(engine, use_settings):
    use_settings(demo_mode=True, backends={"ops": f"openai:{engine}"})
    for job in (lambda m: generate(GenerationRequest("Say hi.", model=m)),
                lambda m: translate(TranslationRequest("Hello.", "en", "fr", model=m)),
                lambda m: summarize(SummaryRequest("One sentence here. And another.", model=m))):
        with pytest.raises(ModelNotFoundError, match="does not connect to typed engine addresses; .*: ops"):
            job(f"openai:{engine}")
    res = generate(GenerationRequest("Say hi.", model="ops", params=GenerationParams(max_new_tokens=2)))
    assert res.text and res.stats.backend == "openai:ops"


def test_unknown_model_id_is_named(engine):
    remote._MODELS.clear()
    with pytest.raises(ModelNotFoundError, match=f"serves no model 'nope'; it serves: {ALIAS}"):
        generate(GenerationRequest("Say hi.", model=f"openai:{engine}#nope"))


def test_dead_port_is_one_line_from_the_cli():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    out = subprocess.run([sys.executable, "-m", "lmdemo", "generate", "--model", f"openai:{url}", "Hi"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == f"error: Cannot reach the engine at {url}: connection refused"


# ---------------------------------------------------------------- no engine needed

@pytest.mark.parametrize("value, word", [
    ("x", "NAME=openai:URL"), ("a b=openai:http://h", "letters, digits"),
    ("smollm2-135m-instruct=openai:http://h", "taken by lmdemo's own models"),
    ("x=http://h:8000/v1", "must be openai:http://HOST:PORT/v1"), ("x=openai:ftp://h", "http:// or https://"),
    ("x=openai:http://user:secret@h/v1", "keys come from the environment"), ("x=openai:http://h/v1#", "after `#`"),
    ("x=openai:http://h:port/v1", "not a valid address"), ("a=openai:http://h,a=openai:http://g", "twice")])
def test_bad_backends_setting_is_named(value, word):
    with pytest.raises(ConfigError, match=word) as caught:
        Settings.from_env({"LMDEMO_BACKENDS": value})
    assert "`backends`" in str(caught.value) and "secret" not in str(caught.value)


def test_backends_setting_is_read_and_a_bare_host_gets_v1():
    settings = Settings.from_env({"LMDEMO_BACKENDS": "vllm-local=openai:http://gpu:8000/v1#qwen, cpu=openai:http://cpu"})
    assert settings.backends == {"vllm-local": "openai:http://gpu:8000/v1#qwen", "cpu": "openai:http://cpu"}
    set_settings(settings)
    try:
        assert remote.endpoint("vllm-local") == remote.Endpoint("http://gpu:8000/v1", "qwen", "vllm-local")
        assert remote.endpoint("cpu").base_url == "http://cpu/v1" and remote.endpoint("cpu").model is None
    finally:
        set_settings(None)


def test_remote_engine_is_refused_where_local_weights_are_needed():
    from lmdemo.jobs.lmlab import score_text
    from lmdemo.jobs.sentiment import SentimentRequest, run as sentiment

    model = "openai:http://127.0.0.1:9/v1"  # never contacted: each refusal comes first
    with pytest.raises(families.WrongFamilyError, match="is a remote engine: .*not classify sentiment"):
        sentiment(SentimentRequest(["great"], model=model))
    with pytest.raises(families.WrongFamilyError, match="is a remote engine: .*needs a local model's logits"):
        score_text("Some text.", model=model)
    with pytest.raises(families.WrongFamilyError, match="is a remote engine: .*training needs local weights"):
        families.require(model, "train-sft")
    with pytest.raises(InputError, match="adapters apply to local models only"):
        GenerationRequest("Hi", model=model, adapter="sentiment-minilm")
    with pytest.raises(InputError, match="must start with http:// or https://"):
        generate(GenerationRequest("Hi", model="openai:nowhere"))


def test_approximate_tokens_cut_and_rejoin_text():
    text = "Tokenisation approximated without the engine's tokenizer, 你好世界."
    ids = remote.APPROX_TOKENIZER(text).input_ids
    assert remote.APPROX_TOKENIZER.decode(ids) == text and len(ids) == remote.approx_tokens(text)
    assert remote.approx_tokens("the cat sat") == 3 and remote.approx_tokens("你好世界") == 4
