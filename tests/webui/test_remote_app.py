"""A remote engine as the app's back-end: llama-cpp-python's own OpenAI server on a built-in GGUF (loopback),
named in the operator's settings, used through the gradio API and in the browser."""

import pytest
from browser_helpers import button, launch, open_page, require_chromium, shot
from engines import key_in_env, llama_server

KEY = "remote-app-key"
ALIAS = "smollm2"
NAME = "llama"  # the operator's name for the engine (LMDEMO_BACKENDS)
PROMPT = "Name three colours of the rainbow."


@pytest.fixture(scope="module")
def engine(prepared, settings):
    """The engine, and the app's settings naming it (its key in LMDEMO_BACKEND_KEY_LLAMA, and for typed
    addresses in LMDEMO_REMOTE_API_KEY)."""
    with llama_server(KEY, ALIAS) as url, key_in_env("LMDEMO_BACKEND_KEY_LLAMA", KEY), \
            key_in_env("LMDEMO_REMOTE_API_KEY", KEY), pytest.MonkeyPatch.context() as mp:
        mp.setattr(settings, "backends", {NAME: f"openai:{url}#{ALIAS}"})
        yield url


def direct(url: str, prompt: str, **settings) -> str:
    """The engine's own reply to one user message, asked by OpenAI's client with the same settings."""
    from openai import OpenAI

    reply = OpenAI(base_url=url, api_key=KEY, max_retries=0).chat.completions.create(
        model=ALIAS, messages=[{"role": "user", "content": prompt}], **settings)
    return reply.choices[0].message.content


def test_generate_endpoint_runs_on_the_named_engine(engine, client):
    out = client.predict(PROMPT, "chat", NAME, 30, 0, api_name="/generate")
    assert out["backend"] == f"openai:{NAME}" and out["tokens"] > 0 and out["tokens_per_second"] > 0
    # /generate's other settings are the Generate tab's defaults: top_p 0.9, seed 0
    assert out["text"] == direct(engine, PROMPT, max_tokens=30, temperature=0, top_p=0.9, seed=0)
    assert out["text"].strip()


def test_a_typed_address_works_on_ones_own_machine(engine, client):
    out = client.predict(PROMPT, "chat", f"openai:{engine}#{ALIAS}", 12, 0, api_name="/generate")
    assert out["backend"].startswith("openai:127.0.0.1") and out["text"].strip()


def test_translate_and_summarize_endpoints_name_the_engine(engine, client):
    out = client.predict("I would like a cup of coffee, please.", "en", "fr", NAME, api_name="/translate")
    assert out["backend"] == f"openai:{NAME}" and out["translation"].strip()
    assert out["translation"] != out["text"] and out["tokens"] > 0
    text = ("The city council voted on Tuesday to build a new public library in the town centre. The project will "
            "cost 12 million euros and is expected to open in 2028.")
    out = client.predict(text, 1, "sentences", NAME, api_name="/summarize")
    assert out["backend"] == f"openai:{NAME}" and out["summary"].strip() and out["summary"] != text


def test_lmdemos_own_api_passes_a_call_on_to_the_named_engine(engine, app_url):
    """/v1 lists the operator's engine by name and answers with it, as a gateway."""
    from openai import OpenAI

    api = OpenAI(base_url=app_url.rstrip("/") + "/v1", api_key="unused", max_retries=0)
    assert (NAME, "remote") in {(m.id, m.owned_by) for m in api.models.list()}
    reply = api.chat.completions.create(model=NAME, messages=[{"role": "user", "content": PROMPT}], max_tokens=20,
                                        temperature=0)
    assert reply.system_fingerprint == f"openai:{NAME}"
    assert reply.choices[0].message.content == direct(engine, PROMPT, max_tokens=20, temperature=0, top_p=0.9,
                                                      seed=0)


def test_the_engine_is_refused_where_weights_are_needed(engine, client):
    with pytest.raises(Exception) as info:
        client.predict("Some text.", NAME, api_name="/perplexity")
    assert "remote engine" in str(info.value)


@pytest.mark.browser
def test_generate_tab_on_the_engine(engine, app_url):
    require_chromium(module_level=False)
    from playwright.sync_api import expect, sync_playwright

    # The tab's defaults (temperature 0.7, top_p 0.9, seed 0, 256 new tokens): seeded, so the engine repeats itself.
    reference = direct(engine, PROMPT, max_tokens=256, temperature=0.7, top_p=0.9, seed=0)
    with sync_playwright() as p:
        browser = launch(p)
        page = open_page(browser, app_url)
        model_box = page.get_by_label("Model").filter(visible=True)
        model_box.click()
        expect(page.get_by_role("option", name=NAME, exact=True)).to_be_visible()  # offered in the picker
        page.get_by_role("option", name=NAME, exact=True).click()
        expect(model_box).to_have_value(NAME)
        page.get_by_label("Your message or text to continue").fill(PROMPT)
        button(page, "Send").click()
        # "openai:llama · eos": the stats line's last form, once the reply is whole
        page.wait_for_function("n => document.body.innerText.includes(n)", arg=f"openai:{NAME} · ",
                               timeout=120_000)
        assert "tok/s" in page.inner_text("body")
        # the reply bubble (markdown drops the line breaks): the engine's own reply, not the prompt
        shown = page.locator(".message-wrap .bot").last.inner_text()
        assert "".join(shown.split()) == "".join(reference.split()) and PROMPT not in shown
        shot(page, "generate-remote-engine")
        browser.close()
