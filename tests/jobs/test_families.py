"""Fast tier: the model families a Hub user types, on tiny models built and trained here (tests/tiny_families.py).

Each seq2seq check compares lmdemo with the model's own greedy ``generate`` on the same input; the trained
behaviours (Marian copies, T5 gives A only with its "summarize: " prefix, BART gives the first sentence) make the
comparison mean something. The wrong-family messages are rows of docs/bad-input.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import tiny_families as tf
from lmdemo.errors import InputError
from lmdemo.jobs.summarization import SummaryRequest, summarize
from lmdemo.jobs.translation import TranslationRequest, translate, translate_stream

pytestmark = [pytest.mark.tiny, pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def home(tiny_home):
    return tiny_home


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {"marian": tf.build_marian_copy(root / "opus-mt-en-fr-tiny"), "t5": tf.build_t5_prefix(root / "t5"),
            "bart": tf.build_bart(root / "bart"), "nllb": tf.build_nllb(root / "nllb"),
            "multi": tf.build_multilabel_classifier(root / "multi"),
            "ready": tf.build_ready_classifier(root / "ready")}


def _reference(folder: Path, text: str, prefix: str = "", src_lang: str | None = None, forced: str | None = None,
               max_new_tokens: int = 80, eos: bool = True) -> str:
    """The model's own greedy answer through transformers alone (``eos``: it must end by itself)."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, **({"src_lang": src_lang} if src_lang else {}))
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    extra = {"forced_bos_token_id": tok.convert_tokens_to_ids(forced)} if forced else {}
    with torch.inference_mode():
        out = model.generate(**tok(prefix + text, return_tensors="pt"), max_new_tokens=max_new_tokens, **tf.GREEDY,
                             **extra)
    if eos:
        assert out[0, -1].item() == model.generation_config.eos_token_id  # ended by itself, not by the token cap
    return tok.decode(out[0], skip_special_tokens=True).strip()


# ---------------------------------------------------------------- families read from the config

def _config_folder(root: Path, name: str, chat_template: bool) -> Path:
    from transformers import LlamaConfig

    folder = root / name
    LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                architectures=["LlamaForCausalLM"]).save_pretrained(folder)
    meta = {"tokenizer_class": "PreTrainedTokenizerFast"}
    if chat_template:
        meta["chat_template"] = "{% for m in messages %}{{ m.content }}{% endfor %}"
    (folder / "tokenizer_config.json").write_text(json.dumps(meta))
    return folder


def test_each_family_is_read_from_the_config_without_weights(models, tmp_path):
    from transformers import BertConfig

    from lmdemo.models.families import describe

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
               architectures=["BertModel"]).save_pretrained(tmp_path / "encoder")
    found = {name: describe(str(folder)).family for name, folder in models.items()}
    found["chat"] = describe(str(_config_folder(tmp_path, "chat", True))).family
    found["base"] = describe(str(_config_folder(tmp_path, "base", False))).family
    found["encoder"] = describe(str(tmp_path / "encoder")).family
    assert found == {"marian": "seq2seq", "t5": "seq2seq", "bart": "seq2seq", "nllb": "seq2seq",
                     "multi": "classifier", "ready": "classifier", "chat": "chat-lm", "base": "base-lm",
                     "encoder": "encoder"}
    assert describe("smollm2-135m-instruct").family == "chat-lm" and describe("gemma-3-270m").family == "base-lm"
    info = describe(str(models["multi"]))
    assert info.labels == ("joy", "anger", "surprise") and info.multi_label


# ---------------------------------------------------------------- translation

def test_marian_translates_as_its_own_greedy_generate(models):
    unseen = "The fox jumped over a quiet dog."
    for text in [*tf.COPY_SENTENCES[:3], unseen]:
        got = translate(TranslationRequest(text, "en", "fr", model=str(models["marian"]))).translation
        assert got == _reference(models["marian"], text)
    # It learned to copy: the comparison is not between two empty strings.
    assert translate(TranslationRequest(tf.COPY_SENTENCES[0], "en", "fr", model=str(models["marian"]))).translation \
        == tf.COPY_SENTENCES[0]


def test_marian_pair_the_model_lacks(models):
    """bad-input row: a Marian model asked for a pair it was not trained on."""
    with pytest.raises(InputError, match="translates English → French only; it cannot translate English → German"):
        translate(TranslationRequest("The cat sat.", "en", "de", model=str(models["marian"])))
    with pytest.raises(InputError, match="translates from English only"):
        translate(TranslationRequest("Le chat.", "fr", "en", model=str(models["marian"])))


def test_marian_pair_from_the_name_when_the_tokenizer_has_none(models, tmp_path):
    folder = tmp_path / "opus-mt-en-de-copy"
    shutil.copytree(models["marian"], folder)
    meta = json.loads((folder / "tokenizer_config.json").read_text())
    meta.pop("source_lang"), meta.pop("target_lang")
    (folder / "tokenizer_config.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="English → German only"):  # opus-mt-en-de in the folder's name
        translate(TranslationRequest("The cat sat.", "en", "fr", model=str(folder)))
    assert translate(TranslationRequest(tf.COPY_SENTENCES[1], "en", "de", model=str(folder))).translation \
        == tf.COPY_SENTENCES[1]


def test_nllb_source_code_and_forced_target(models):
    text = tf.SENTENCES[3]
    for target, code in (("fr", "fra_Latn"), ("de", "deu_Latn")):
        got = translate(TranslationRequest(text, "en", target, model=str(models["nllb"]))).translation
        assert got == _reference(models["nllb"], text, src_lang="eng_Latn", forced=code)
    # The source code changes the encoder's input: Spanish-coded text gives the reference for spa_Latn.
    got = translate(TranslationRequest(text, "es", "fr", model=str(models["nllb"]))).translation
    assert got == _reference(models["nllb"], text, src_lang="spa_Latn", forced="fra_Latn")
    with pytest.raises(InputError, match="no language code for Italian"):
        translate(TranslationRequest(text, "en", "it", model=str(models["nllb"])))


def test_t5_translation_prefix_and_its_known_pairs(models):
    from transformers import AutoTokenizer

    text = tf.SENTENCES[5]
    got = translate(TranslationRequest(text, "en", "fr", model=str(models["t5"]))).translation
    # Never trained to translate, it runs to Translate's cap: 3 tokens per source token, plus 20.
    cap = 3 * len(AutoTokenizer.from_pretrained(models["t5"])(text, add_special_tokens=False).input_ids) + 20
    assert got == _reference(models["t5"], text, prefix="translate English to French: ", max_new_tokens=cap, eos=False)
    with pytest.raises(InputError, match="knows these translations: English → French; not English → German"):
        translate(TranslationRequest(text, "en", "de", model=str(models["t5"])))


def _short_encoder(folder: Path, dest: Path, limit: int) -> Path:
    shutil.copytree(folder, dest)
    meta = json.loads((dest / "tokenizer_config.json").read_text())
    meta["model_max_length"] = limit
    (dest / "tokenizer_config.json").write_text(json.dumps(meta))
    return dest


def test_input_over_the_encoder_limit_is_translated_in_chunks(models, tmp_path):
    folder = _short_encoder(models["marian"], tmp_path / "opus-mt-en-fr-short", 24)
    text = " ".join(tf.COPY_SENTENCES[:3])  # ~33 tokens: truncated to 24, the third sentence would be lost
    res = translate(TranslationRequest(text, "en", "fr", model=str(folder), by_sentence=False))
    assert res.sentences >= 2 and res.translation == text


def test_translation_streams_and_stop_ends_it(models):
    req = TranslationRequest(" ".join(tf.COPY_SENTENCES), "en", "fr", model=str(models["marian"]))
    parts = [r.translation for r in translate_stream(req)]
    assert len(parts) > 5 and parts[-1] == " ".join(tf.COPY_SENTENCES)
    assert all(b.startswith(a) for a, b in zip(parts, parts[1:]) if a)
    stop = threading.Event()
    last = None
    for last in translate_stream(req, stop=stop):
        stop.set()
    assert last.sentences == 1 and len(last.translation) < len(parts[-1]) // 2


# ---------------------------------------------------------------- summarisation

def test_t5_summary_uses_its_config_prefix(models):
    for a, b in tf.T5_PAIRS[:2]:
        text = f"{a} {b}"
        got = summarize(SummaryRequest(text, length=2, model=str(models["t5"]))).summary
        assert got == _reference(models["t5"], text, prefix=tf.T5_PREFIX) == a
        assert _reference(models["t5"], text) == b  # without the prefix the model answers otherwise


def test_bart_summary_is_its_own_greedy_generate(models):
    for a, b in tf.BART_PAIRS[:2]:
        got = summarize(SummaryRequest(f"{a} {b}", length=2, model=str(models["bart"]))).summary
        assert got == _reference(models["bart"], f"{a} {b}") == a


def test_summary_over_the_encoder_limit_goes_in_parts(models, tmp_path):
    folder = _short_encoder(models["t5"], tmp_path / "t5-short", 24)
    text = " ".join(f"{a} {b}" for a, b in tf.T5_PAIRS)
    res = summarize(SummaryRequest(text, length=2, model=str(folder)))
    assert res.chunks >= 2 and any("parts" in n for n in res.notes) and res.summary


def test_a_base_lm_summarises_with_a_completion_prompt(tmp_path):
    """bad-input row: a base LM (no chat template) in Summarise answers, not an error about templates."""
    from tokenizers import Tokenizer, models as tmodels, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(tmodels.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(tf.SENTENCES, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "</s>"],
                                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                              show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, eos_token_id=tok.eos_token_id)).save_pretrained(tmp_path / "b")
    tok.save_pretrained(tmp_path / "b")
    text = " ".join(tf.SENTENCES[:3])
    res = summarize(SummaryRequest(text, length=1, model=str(tmp_path / "b")))
    prompt = f"Text: {text}\n\nSummary of the text above in one sentence:"
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "b").eval()
    ids = tok(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=61, do_sample=False, pad_token_id=tok.eos_token_id)
    expected = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).split("\n\n")[0]
    from lmdemo.jobs.summarization import fit_length

    assert res.summary == fit_length(expected.strip(), SummaryRequest(text, length=1))


# ---------------------------------------------------------------- classifiers and wrong families

def _logits(folder: Path, texts: list[str]) -> torch.Tensor:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        return model(**tok(texts, return_tensors="pt", padding=True)).logits.float()


def test_a_ready_classifier_uses_its_own_labels(models, fp32):
    from lmdemo.jobs.sentiment import classify

    texts = tf.SENTENCES[:6]
    probs = _logits(models["ready"], texts).softmax(-1)
    results = classify(texts, model=str(models["ready"]))
    for res, row in zip(results, probs):
        assert set(res.scores) == {"NEG", "NEU", "POS"}  # as the config says, not lower-cased or renamed
        assert res.label == tf.READY_LABELS[int(row.argmax())]
        assert [res.scores[tf.READY_LABELS[i]] for i in range(3)] == pytest.approx(row.tolist(), abs=1e-5)
        assert res.labels is None


def test_a_multi_label_classifier_scores_with_sigmoid(models, fp32):
    from lmdemo.jobs.sentiment import classify

    texts = tf.SENTENCES[:6]
    probs = _logits(models["multi"], texts).sigmoid()
    results = classify(texts, model=str(models["multi"]))
    for res, row in zip(results, probs):
        assert [res.scores[tf.MULTILABEL_LABELS[i]] for i in range(3)] == pytest.approx(row.tolist(), abs=1e-5)
        assert res.labels == [tf.MULTILABEL_LABELS[i] for i in range(3) if row[i] >= 0.5]
        assert "labels" in res.to_dict()
    assert any(abs(sum(r.scores.values()) - 1) > 0.05 for r in results)  # not a softmax


def test_a_plain_encoder_in_sentiment(tmp_path):
    """bad-input row: a plain encoder (no trained head) in Sentiment."""
    from transformers import BertConfig, BertModel

    from lmdemo.jobs.sentiment import classify

    BertModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(tmp_path / "enc")
    with pytest.raises(InputError, match="has no trained classification head; fine-tune it in the Fine-tune tab"):
        classify(["great"], model=str(tmp_path / "enc"))


def test_a_seq2seq_model_in_generate_and_the_lm_lab(models):
    """bad-input row: an encoder-decoder model in Generate or the LM lab."""
    from lmdemo.jobs.generation import GenerationRequest, generate
    from lmdemo.jobs.lmlab import PerplexityRequest, perplexity

    with pytest.raises(InputError, match="encoder-decoder .seq2seq. model.*use it in Translate or Summarise"):
        generate(GenerationRequest("Hello", mode="completion", model=str(models["marian"])))
    with pytest.raises(InputError, match="the LM lab scores causal language models"):
        perplexity(PerplexityRequest("Hello there", model=str(models["bart"])))


def test_a_classifier_in_summarise(models):
    with pytest.raises(InputError, match="is a sequence classifier; it cannot do this job: pick a summariser"):
        summarize(SummaryRequest("The cat sat. It was warm.", model=str(models["ready"])))


# ---------------------------------------------------------------- evaluation

def test_evaluation_runs_seq2seq_models(models, tmp_path):
    from lmdemo.eval.evaluation import EvalRequest, compare_models

    rows = [{"source": s, "reference": s, "source_lang": "en", "target_lang": "fr"} for s in tf.COPY_SENTENCES]
    data = tmp_path / "copy.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (_, res), = compare_models(EvalRequest(task="translation", data=str(data), models=[str(models["marian"])])).results
    assert res.metrics["bleu"] == pytest.approx(100.0) and res.metrics["chrf"] == pytest.approx(100.0)
    rows = [{"text": f"{a} {b}", "summary": a} for a, b in tf.BART_PAIRS]
    data = tmp_path / "first.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (_, res), = compare_models(EvalRequest(task="summarisation", data=str(data), models=[str(models["bart"])])).results
    assert res.metrics["rougeL"] == pytest.approx(1.0)


# ---------------------------------------------------------------- the CLI

def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, LMDEMO_HOME=str(home), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-m", "lmdemo", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_translate_and_summarise_seq2seq(models, home):
    text = tf.SENTENCES[7]
    proc = _cli("translate", text, "--model", str(models["marian"]), "--json", home=home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["translation"] == _reference(models["marian"], text)
    a, b = tf.T5_PAIRS[1]
    proc = _cli("summarize", f"{a} {b}", "--model", str(models["t5"]), "--json", home=home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["summary"] == a
    proc = _cli("translate", text, "--model", str(models["marian"]), "--target", "de", home=home)
    assert proc.returncode == 2 and proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]  # after the weights' loading bar: the pair is the tokenizer's
    assert last.startswith("error: ") and "English → French only" in last and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- seq2seq LoRA

def _pairs(sentences: list[str]) -> list[dict]:
    return [{"source": s, "target": "Le " + s} for s in sentences]  # a consistent change a copier must learn


def _val_loss(model, tok, rows: list[dict]) -> float:
    losses = []
    with torch.inference_mode():
        for r in rows:
            enc = tok(r["source"], return_tensors="pt")
            labels = tok(text_target=r["target"], return_tensors="pt").input_ids
            losses.append(model(**enc, labels=labels).loss.item())
    return sum(losses) / len(losses)


def test_seq2seq_lora_lowers_validation_loss_and_reloads_with_plain_peft(models, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from lmdemo.eval.compare import compare_base_and_adapter
    from lmdemo.train.plan import FinetuneRequest, plan, run_plan

    train, val = _pairs(tf.SENTENCES[:40]), _pairs(tf.SENTENCES[40:46])
    for name, rows in (("train.jsonl", train), ("val.jsonl", val)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    planned = plan(FinetuneRequest(task="translation", data=str(tmp_path / "train.jsonl"),
                                   eval_data=str(tmp_path / "val.jsonl"), base=str(models["marian"]), max_steps=40,
                                   seed=0, output=str(tmp_path / "adapter"), source="en", target="fr"))
    result = run_plan(planned)
    out = Path(result.output_dir)
    assert json.loads((out / "adapter_config.json").read_text())["task_type"] == "SEQ_2_SEQ_LM"
    assert {"adapter_model.safetensors", "README.md", "lmdemo.json"} <= {p.name for p in out.iterdir()}
    card = (out / "README.md").read_text()
    assert "pipeline_tag: translation" in card and "(translation, English → French)" in card

    tok = AutoTokenizer.from_pretrained(models["marian"])
    base = AutoModelForSeq2SeqLM.from_pretrained(models["marian"]).eval()
    before = _val_loss(base, tok, val)
    tuned = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(models["marian"]), str(out)).eval()
    after = _val_loss(tuned, tok, val)
    assert after < 0.7 * before, (before, after)
    assert result.metrics["eval_loss"] == pytest.approx(after, rel=0.05)

    comparison = compare_base_and_adapter("translation", val, str(models["marian"]), str(out))
    assert set(comparison["metrics"]["base"]) == set(comparison["metrics"]["fine-tuned"]) == {"bleu", "chrf"}
    assert len(comparison["examples"]) == 3 and comparison["examples"][0]["reference"] == val[0]["target"]
    # Translate with the adapter gives what the comparison saw for it.
    got = translate(TranslationRequest(val[0]["source"], "en", "fr", model=str(models["marian"]),
                                       adapter=str(out))).translation
    assert got == comparison["examples"][0]["fine-tuned"]


def test_cli_finetune_translation(models, home, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"en": r["source"], "fr": r["target"]}) + "\n" for r in _pairs(tf.SENTENCES)))
    proc = _cli("finetune", "translation", "--data", str(data), "--base", str(models["marian"]), "--source-column",
                "en", "--target-column", "fr", "--max-steps", "4", "--output", "cli-mt", home=home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert set(summary["comparison"]["base"]) == {"bleu", "chrf"} and summary["validation_rows"] == 5
    assert Path(summary["output_dir"]).parent == home / "adapters"
    proc = _cli("finetune", "translation", "--data", str(data), "--source-column", "en", "--target-column", "fr",
                "--output", "x", home=home)
    assert proc.returncode == 2 and "needs a base model: an encoder-decoder" in proc.stderr.strip().splitlines()[-1]
    proc = _cli("finetune", "translation", "--data", str(data), "--base", "all-minilm-l6-v2", "--source-column", "en",
                "--target-column", "fr", "--output", "x", home=home)
    assert proc.returncode == 2 and "is a plain encoder; it cannot do this job: pick an encoder-decoder model" \
        in proc.stderr.strip().splitlines()[-1]


# ---------------------------------------------------------------- Hub ids (a loopback Hub)

def _publish(fake, repo: str, folder: Path) -> None:
    fake.repos[repo] = {"type": "model", "private": False,
                        "files": {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}}


def _weights_fetched(fake, repo: str) -> bool:
    return any(r["path"].startswith(f"/{repo}/resolve/") and r["path"].endswith(".safetensors") for r in fake.requests)


def test_a_hub_marian_translates_and_a_hub_encoder_is_refused_before_its_weights(models, online, tmp_path):
    from transformers import BertConfig, BertModel

    from lmdemo.jobs.sentiment import classify

    _publish(online, "tiny/opus-mt-en-fr", models["marian"])
    text = tf.COPY_SENTENCES[2]
    assert translate(TranslationRequest(text, "en", "fr", model="tiny/opus-mt-en-fr")).translation == text
    assert _weights_fetched(online, "tiny/opus-mt-en-fr")
    BertModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(tmp_path / "enc")
    _publish(online, "tiny/encoder", tmp_path / "enc")
    with pytest.raises(InputError, match="has no trained classification head"):
        classify(["great"], model="tiny/encoder")
    assert not _weights_fetched(online, "tiny/encoder")  # the config alone told


def test_a_seq2seq_model_loads_in_4bit_through_the_same_path(models):
    from lmdemo.models.loading import _quantized_layers, load

    lm = load(str(models["marian"]), head="seq2seq-lm", quantize="4bit")
    if lm.spec.quantize == "none":  # bitsandbytes without a backend here: the note says so
        assert any("4bit" in n for n in lm.notes)
        return
    assert _quantized_layers(lm.model) > 0
    res = translate(TranslationRequest(tf.COPY_SENTENCES[0], "en", "fr", model=str(models["marian"]), quantize="4bit"))
    assert res.translation.strip()
