"""Fast tier: every job end to end on tiny models built here from a config (no built-in model needed).

A 2-layer Llama with a byte-level BPE tokenizer and a 2-layer BERT classifier with a WordPiece tokenizer are
trained/initialised in the test and saved as safetensors folders in tmp; lmdemo loads them by folder path.
Random weights are enough: each test compares what lmdemo returns with what the model itself computes.
LMDEMO_HOME points to a tmp folder for the whole module, so nothing touches the user's cache.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from lmdemo.config import Settings, get_settings, set_settings
from lmdemo.engine.streaming import GenerationParams
from lmdemo.errors import InputError
from lmdemo.jobs.generation import GenerationRequest, generate, generate_stream
from tiny_families import SENTENCES, build_tiny_llama

pytestmark = pytest.mark.tiny

ROOT = Path(__file__).resolve().parents[2]

# ~50 short English sentences (tiny_families.SENTENCES): the tiny tokenizers' training text and the fine-tuning
# rows' vocabulary.
GREEDY = dict(temperature=0, repetition_penalty=1.0)

HOLIDAY = ["sun", "beach", "holiday", "sea", "swim", "hotel pool", "sand", "summer trip"]
MONEY = ["tax", "invoice", "bank", "fees", "account", "receipt", "payment", "forms"]


# ---------------------------------------------------------------- the tiny models, built once per module

@pytest.fixture(scope="module", autouse=True)
def home(tiny_home):
    """Every test here runs in the module's tmp LMDEMO_HOME."""
    return tiny_home


def _reference_dtype() -> torch.dtype:
    """The dtype lmdemo loads in by default here (bf16 on CPUs with fast bf16, else fp32): compare like with like."""
    from lmdemo.models.loading import resolve_dtype

    return resolve_dtype("auto", torch.device("cpu"))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama; its byte-level BPE tokenizer is trained on SENTENCES, adds BOS and has a chat template."""
    folder = build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), chat=True)
    assert (folder / "model.safetensors").is_file()
    return folder


@pytest.fixture(scope="module")
def llama(llama_dir):
    """(tokenizer, model) read straight with transformers: the reference lmdemo is compared with."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llama_dir)
    model = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=_reference_dtype()).eval()
    return tok, model


def _bert_tokenizer(folder: Path):
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    words = SENTENCES + [f"{a} {b}" for a in HOLIDAY for b in MONEY]
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(words, vocab_size=300, min_frequency=1, show_progress=False)
    folder.mkdir(parents=True, exist_ok=True)
    wordpiece.save_model(str(folder))
    return BertTokenizerFast(str(folder / "vocab.txt"), do_lower_case=True)


@pytest.fixture(scope="module")
def bert_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """(a 2-layer BERT sequence classifier with negative/positive labels, the same encoder without a head)."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    root = tmp_path_factory.mktemp("tiny-bert")
    tok = _bert_tokenizer(root / "vocab")
    # A much wider init than BERT's 0.02: with 0.02 every text gets the same logits (both labels must occur).
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, initializer_range=0.5, num_labels=2,
                        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    out = []
    for name, cls in (("classifier", BertForSequenceClassification), ("encoder", BertModel)):
        torch.manual_seed(0)
        folder = root / name
        cls(config).save_pretrained(folder, safe_serialization=True)
        tok.save_pretrained(folder)
        out.append(folder)
    return out[0], out[1]


@pytest.fixture(scope="module")
def topic_rows() -> list[dict]:
    """40 rows of two easy classes: holidays (positive) vs bills and banks (negative)."""
    rows = []
    for i in range(20):
        rows.append({"text": f"the {HOLIDAY[i % 8]} and the {HOLIDAY[(i * 3 + 1) % 8]} were lovely",
                     "label": "positive"})
        rows.append({"text": f"the {MONEY[i % 8]} and the {MONEY[(i * 3 + 1) % 8]} arrived today",
                     "label": "negative"})
    return rows


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def adapter(bert_dirs, topic_rows, tmp_path_factory):
    """A LoRA classification adapter trained through plan/run_plan on the plain encoder: (plan, result)."""
    from lmdemo.train.plan import FinetuneRequest, plan, run_plan

    root = tmp_path_factory.mktemp("finetune")
    data = _jsonl(root / "topics.jsonl", topic_rows)
    planned = plan(FinetuneRequest(task="classification", data=str(data), base=str(bert_dirs[1]), epochs=3,
                                   seed=0, output=str(root / "adapter")))
    return planned, run_plan(planned)


@pytest.fixture
def no_fastgen():
    """transformers' generate instead of lmdemo's decode loop, for one test."""
    module = get_settings()
    set_settings(Settings(home=module.home, fast_generation=False))
    yield
    set_settings(module)


# ---------------------------------------------------------------- (a) generation = the model's own greedy tokens

def _reference(model, tok, inputs: dict, max_new_tokens: int) -> tuple[list[int], str]:
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    return new, tok.decode(new, skip_special_tokens=True)


def _check_same(result, new: list[int], text: str, max_new_tokens: int, eos: int) -> None:
    assert result.text == text
    assert result.stats.tokens == len(new)  # generate's count, an EOS included
    if eos in new:
        assert new[-1] == eos and result.stats.finish_reason == "eos"
    else:
        assert len(new) == max_new_tokens and result.stats.finish_reason == "length"


# "Her garden is" meets EOS after 33 tokens with these weights in fp32 (a path worth covering); the others run
# to the limit. Either way the expected finish comes from the reference, so another dtype still checks.
@pytest.mark.parametrize("backend", ["fastgen", "transformers"])
@pytest.mark.parametrize("prompt, max_new", [("We walked to", 12), ("A small bird", 12), ("Her garden is", 60)])
def test_completion_is_the_models_greedy_output(request, llama_dir, llama, backend, prompt, max_new):
    if backend == "transformers":
        request.getfixturevalue("no_fastgen")
    tok, model = llama
    new, text = _reference(model, tok, dict(tok(prompt, return_tensors="pt")), max_new)
    result = generate(GenerationRequest(prompt, mode="completion", model=str(llama_dir),
                                        params=GenerationParams(max_new_tokens=max_new, **GREEDY)))
    assert result.stats.backend == backend
    _check_same(result, new, text, max_new, tok.eos_token_id)


@pytest.mark.parametrize("backend", ["fastgen", "transformers"])
def test_chat_is_the_models_greedy_output_on_its_template(request, llama_dir, llama, backend):
    if backend == "transformers":
        request.getfixturevalue("no_fastgen")
    tok, model = llama
    prompt = "Where is the station?"
    ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                  return_dict=True, return_tensors="pt")
    assert tok.decode(ids["input_ids"][0]).endswith("<|assistant|>")
    new, text = _reference(model, tok, {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]}, 12)
    result = generate(GenerationRequest(prompt, mode="chat", model=str(llama_dir),
                                        params=GenerationParams(max_new_tokens=12, **GREEDY)))
    assert result.stats.backend == backend
    _check_same(result, new, text, 12, tok.eos_token_id)


# ---------------------------------------------------------------- (b) streaming and stop

def test_stream_grows_to_the_whole_result(llama_dir):
    req = GenerationRequest("We walked to", mode="completion", model=str(llama_dir),
                            params=GenerationParams(max_new_tokens=60, **GREEDY))
    parts = list(generate_stream(req))
    assert len(parts) > 1
    assert all(b.text.startswith(a.text) for a, b in zip(parts, parts[1:]))  # each partial extends the last
    whole = generate(req)
    assert parts[-1].text == whole.text and parts[-1].stats.tokens == whole.stats.tokens == 60
    assert parts[-1].stats.finish_reason == "length"


def test_stop_event_ends_the_stream(llama_dir):
    stop = threading.Event()
    req = GenerationRequest("We walked to", mode="completion", model=str(llama_dir),
                            params=GenerationParams(max_new_tokens=230, **GREEDY))
    seen, last = 0, None
    for last in generate_stream(req, stop=stop):
        seen += 1
        stop.set()
    assert seen >= 1 and last.stats.finish_reason == "stopped"
    assert last.stats.tokens < 230  # it really ended early (unstopped, this prompt runs to the limit)


# ---------------------------------------------------------------- (c, d) LM lab maths against the logits

def test_perplexity_is_exp_mean_nll_from_bos(llama_dir, llama):
    from lmdemo.jobs.lmlab import PerplexityRequest, perplexity

    tok, model = llama
    text = "The dog sat in the warm sun by the river."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    inputs = torch.tensor([[tok.bos_token_id, *ids]])
    with torch.no_grad():
        logits = model(input_ids=inputs).logits[0, :-1].float()
    nll = torch.nn.functional.cross_entropy(logits, torch.tensor(ids), reduction="none")
    res = perplexity(PerplexityRequest(text, model=str(llama_dir)))
    assert [t.token_id for t in res.tokens] == ids  # every text token scored, the first one given BOS
    assert res.total_logprob == pytest.approx(-nll.sum().item(), rel=1e-4)
    assert res.perplexity == pytest.approx(math.exp(nll.mean().item()), rel=1e-4)
    assert set(res.to_dict()) == {"perplexity", "total_logprob", "tokens", "note", "adapter"}


def test_next_tokens_are_the_softmax_top_k(llama_dir, llama):
    from lmdemo.jobs.lmlab import NextTokensRequest, next_tokens

    tok, model = llama
    prefix = "The children built a"
    ids = [tok.bos_token_id, *tok(prefix, add_special_tokens=False)["input_ids"]]
    with torch.no_grad():
        probs = model(input_ids=torch.tensor([ids])).logits[0, -1].float().softmax(-1)
    top = torch.topk(probs, 5)
    res = next_tokens(NextTokensRequest(prefix, k=5, model=str(llama_dir)))
    assert [t for t, _ in res.tokens] == [tok.decode([i]) for i in top.indices.tolist()]
    assert [p for _, p in res.tokens] == pytest.approx(top.values.tolist(), rel=1e-4)
    assert all(a >= b for (_, a), (_, b) in zip(res.tokens, res.tokens[1:]))
    assert 0 < sum(p for _, p in res.tokens) <= 1 + 1e-6


# ---------------------------------------------------------------- (e) the other generation jobs run on it

def test_summarize_runs_on_a_tiny_chat_model(llama_dir):
    from lmdemo.jobs.summarization import SummaryRequest, summarize

    text = "The bus was late because of the snow. We walked to the market instead. The bread was fresh."
    res = summarize(SummaryRequest(text, length=1, unit="sentences", model=str(llama_dir)))
    d = res.to_dict()
    assert set(d) == {"summary", "input_words", "summary_words", "input_tokens", "chunks", "notes", "tokens",
                      "tokens_per_second", "backend", "fact_check", "flagged", "unsupported"}
    assert d["tokens"] > 0 and d["backend"] in ("fastgen", "transformers")
    assert d["fact_check"] in ("passed", "regenerated", "trimmed", "lead") and d["unsupported"] == []
    assert d["input_words"] == 18 and d["chunks"] == 1 and isinstance(d["summary"], str)
    assert d["summary_words"] == len(d["summary"].split()) and d["input_tokens"] > 0


def test_translate_runs_on_a_tiny_completion_model(llama_dir):
    from lmdemo.jobs.translation import TranslationRequest, translate

    res = translate(TranslationRequest("The cat sat on the mat. It was warm.", source="en", target="fr",
                                       model=str(llama_dir), shots=1, max_new_tokens=16))
    d = res.to_dict()
    assert set(d) == {"text", "translation", "source", "target", "sentences", "notes", "tokens", "tokens_per_second",
                      "backend"}
    assert d["tokens"] > 0 and d["backend"] in ("fastgen", "transformers")
    assert (d["source"], d["target"], d["sentences"]) == ("en", "fr", 2) and isinstance(d["translation"], str)


# ---------------------------------------------------------------- (f) bad input

@pytest.mark.parametrize("prompt", ["", "   \n\t "])
@pytest.mark.parametrize("mode", ["completion", "chat"])
def test_empty_prompt_is_a_one_line_input_error(llama_dir, prompt, mode):
    with pytest.raises(InputError) as err:
        generate(GenerationRequest(prompt, mode=mode, model=str(llama_dir),
                                   params=GenerationParams(max_new_tokens=4, **GREEDY)))
    message = str(err.value)
    assert "empty" in message and "\n" not in message.strip()


# ---------------------------------------------------------------- (g) sentiment = the classifier's argmax

def test_sentiment_labels_are_the_models_argmax(bert_dirs, fp32):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lmdemo.jobs.sentiment import SentimentRequest, run

    folder = bert_dirs[0]
    texts = ["the sun and the sea", "pay the tax invoice today", "The cat sat on the warm mat.",
             "my bank account", "we spent the holiday on a sunny beach and swam every day",
             "The tax office needs the forms by Monday."]
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=fp32).eval()
    expected = []
    with torch.no_grad():
        for text in texts:  # one at a time: lmdemo's padded batches must not change a label
            probs = model(**tok(text, return_tensors="pt")).logits[0].float().softmax(-1)
            expected.append((model.config.id2label[int(probs.argmax())], probs.max().item()))
    assert {label for label, _ in expected} == {"negative", "positive"}, "pick texts the model splits"
    batch = run(SentimentRequest(texts, model=str(folder)))
    assert [r.text for r in batch.results] == texts
    assert [r.label for r in batch.results] == [label for label, _ in expected]
    assert [r.score for r in batch.results] == pytest.approx([p for _, p in expected], abs=1e-3)
    assert all(set(r.scores) == {"negative", "positive"} for r in batch.results)
    assert batch.to_dict()["results"][0].keys() == {"text", "label", "score"}


# ---------------------------------------------------------------- (h) fine-tuning through the plan

def test_finetune_plan_writes_a_loadable_adapter(adapter, bert_dirs):
    from safetensors import safe_open

    from lmdemo.models.adapters import resolve_pick

    planned, result = adapter
    folder = Path(result.output_dir)
    assert folder == Path(planned.output_dir) and planned.task == "classification"
    assert len(planned.data.train) == 36 and len(planned.data.validation) == 4
    assert {p.name for p in folder.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors", "lmdemo.json"}
    meta = json.loads((folder / "lmdemo.json").read_text())
    assert meta["task"] == "classification" and meta["labels"] == ["negative", "positive"] == result.labels
    assert meta["base_model"] == str(bert_dirs[1])
    accuracy = result.metrics["accuracy"]
    assert 0 <= accuracy <= 1 and meta["metrics"]["eval_accuracy"] == pytest.approx(accuracy)
    assert accuracy * 4 == round(accuracy * 4)  # a share of the 4 validation rows
    # The best validation pass is saved: LoRA's B matrices moved from their zero start unless step 0 (the
    # prototype head) won; the head is saved with them either way.
    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:
        names = list(f.keys())
        lora_b = [f.get_tensor(n) for n in names if "lora_B" in n]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b) == (meta["best_step"] > 0), meta["best_step"]
    assert any("classifier" in n for n in names)
    base, picked = resolve_pick(str(folder))
    assert (Path(base), Path(picked)) == (bert_dirs[1], folder.resolve())


# ---------------------------------------------------------------- (i) comparing models on one set

def test_compare_models_scores_classifier_and_adapter(adapter, bert_dirs, topic_rows, tmp_path):
    from lmdemo.eval.evaluation import EvalRequest, compare_models

    _, result = adapter
    data = _jsonl(tmp_path / "eval.jsonl", topic_rows[:12])
    models = [str(bert_dirs[0]), result.output_dir]
    comparison = compare_models(EvalRequest(task="classification", data=str(data), models=models, limit=10))
    assert [label for label, _ in comparison.results] == models
    for _, res in comparison.results:
        assert res.n == 10 and len(res.predictions) == 10
        assert set(res.metrics) == {"accuracy", "f1"} and all(0 <= v <= 1 for v in res.metrics.values())
        preds = [row["prediction"] for row in res.predictions]
        hits = sum(p == row["label"] for p, row in zip(preds, res.predictions))
        assert res.metrics["accuracy"] == pytest.approx(hits / 10)
        assert set(preds) <= {"negative", "positive"}
    assert comparison.results[1][1].adapter == str(Path(result.output_dir).resolve())
    assert len(comparison.to_dict()["results"]) == 2


# ---------------------------------------------------------------- (j) the CLI in a subprocess

def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, LMDEMO_HOME=str(home), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-m", "lmdemo", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)


def test_cli_generate_json_on_a_tiny_model(llama_dir, tiny_home):
    args = ["generate", "hi there", "--mode", "completion", "--model", str(llama_dir), "--max-new-tokens", "5",
            "--temperature", "0"]
    proc = _cli(*args, "--json", home=tiny_home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)  # the whole stdout is the one JSON object
    assert out["tokens"] == 5 and out["finish_reason"] == "length"
    # The same request in this process (the CLI's default repetition penalty included) gives the same text.
    same = generate(GenerationRequest("hi there", mode="completion", model=str(llama_dir),
                                      params=GenerationParams(max_new_tokens=5, temperature=0)))
    assert out["text"] == same.text


def test_cli_bad_flag_value_is_one_error_line(llama_dir, tiny_home):
    proc = _cli("generate", "hi there", "--mode", "completion", "--model", str(llama_dir), "--temperature", "nan",
                "--json", home=tiny_home)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "temperature" in lines[0], proc.stderr
