"""The app, driven through gradio_client exactly as a user's script would."""

import pytest

ENDPOINTS = {"/generate", "/sentiment", "/sentiment_batch", "/summarize", "/translate", "/perplexity",
             "/next_tokens", "/bigram"}


def test_every_documented_endpoint_is_there(client):
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert ENDPOINTS <= named


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
    assert top[0][0].strip() == "Paris"
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
