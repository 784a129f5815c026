"""Instruction fine-tuning: response-only labels, and tiny LoRA runs in the TRL style (1-2 steps in tmp_path)."""

import json
import math
import re
import threading
from pathlib import Path

import pytest
import torch

from lmdemo.data import tabular
from lmdemo.train import sft
from lmdemo.models import store
from lmdemo.errors import InputError
from lmdemo.models.adapters import ADAPTER_META
from lmdemo.models.loading import load_for_training
from lmdemo.train.plan import FinetuneRequest, read_data
from lmdemo.train.sft import IGNORE_INDEX, SFTCollator, SFTConfig, format_example, prompt_text, train_sft

CHAT = "smollm2-135m-instruct"
SAMPLE = "instructions (short answers)"  # the bundled SFT sample: lmdemo/data/samples/instructions_*.jsonl
ROWS = [
    {"prompt": "What is 2+2?", "response": "Four."},
    {"prompt": "Capital of France?", "response": "Paris."},
    {"prompt": "Colour of the sky?", "response": "Blue."},
    {"prompt": "Opposite of hot?", "response": "Cold."},
]
TINY = dict(max_steps=2, batch_size=2, max_length=64)


def _tokenizer(name):
    return store.load_tokenizer(store.model_dir(name))


def _split(example):
    """(prompt ids, response ids) as the labels mark them."""
    n = next(i for i, label in enumerate(example["labels"]) if label != IGNORE_INDEX)
    assert all(label == IGNORE_INDEX for label in example["labels"][:n])
    assert example["labels"][n:] == example["input_ids"][n:]
    return example["input_ids"][:n], example["input_ids"][n:]


def test_chat_template_labels_cover_the_response_only(prepared):
    tok = _tokenizer(CHAT)
    example = format_example(tok, "What is 2+2?", "Four.")
    prompt_ids, response_ids = _split(example)
    assert prompt_ids == tok(prompt_text(tok, "What is 2+2?"), add_special_tokens=False)["input_ids"]
    assert tok.decode(response_ids) == "Four.<|im_end|>\n"
    full = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"},
                                    {"role": "assistant", "content": "Four."}], return_dict=True)
    assert example["input_ids"] == list(full["input_ids"])  # same ids as tokenising the whole conversation
    assert example["attention_mask"] == [1] * len(example["input_ids"])


def test_completion_format_labels_cover_the_response_and_eos(prepared):
    tok = _tokenizer("gemma-3-270m")
    assert sft.prompt_format(tok) == "completion" and prompt_text(tok, "2+2=") == "2+2=\n"
    prompt_ids, response_ids = _split(format_example(tok, "2+2=", "4"))
    assert prompt_ids == tok("2+2=\n")["input_ids"] and prompt_ids[0] == tok.bos_token_id
    assert response_ids[-1] == tok.eos_token_id and tok.decode(response_ids) == "4<eos>"


def test_truncation_and_padding(prepared):
    tok = _tokenizer(CHAT)
    long = format_example(tok, "Hi", "word " * 100, max_length=48)
    assert len(long["input_ids"]) == len(long["labels"]) == 48
    short = format_example(tok, "Hi", "Yo")
    batch = SFTCollator(pad_token_id=tok.pad_token_id)([long, short])
    n = len(short["input_ids"])
    assert batch["input_ids"].shape == batch["labels"].shape == (2, 48)
    assert (batch["labels"][1, n:] == IGNORE_INDEX).all() and (batch["input_ids"][1, n:] == tok.pad_token_id).all()
    assert batch["attention_mask"][1].sum() == n


@pytest.mark.parametrize("field, value", [("epochs", 0), ("max_steps", 0), ("learning_rate", -1), ("batch_size", 0),
                                          ("max_length", 2), ("lora_r", 0), ("lora_dropout", 1.0),
                                          ("quantize", "2bit"), ("save_steps", 0), ("target_modules", [])])
def test_config_rejects_bad_values_naming_the_field(tmp_path, field, value):
    with pytest.raises(InputError, match=f"`{field}`"):
        SFTConfig(output_dir=str(tmp_path / "a"), **{field: value})


def test_bad_rows_are_rejected_before_loading(tmp_path):
    cfg = SFTConfig(output_dir=str(tmp_path / "a"), **TINY)
    with pytest.raises(InputError, match="No training rows"):
        train_sft([], [], cfg)
    with pytest.raises(InputError, match="1 of 2 training rows"):
        train_sft([ROWS[0], {"prompt": "Hi", "response": "  "}], [], cfg)
    with pytest.raises(InputError, match="1 of 1 evaluation rows"):
        train_sft(ROWS, [{"prompt": "", "response": "x"}], cfg)


def _q_proj(model):
    return model.get_submodule("model.layers.0.self_attn.q_proj")


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


@pytest.fixture(scope="module")
def sample():
    """The bundled SFT sample, read as `lmdemo finetune sft --sample` and the Fine-tune tab read it."""
    return read_data(FinetuneRequest(task="sft", sample=SAMPLE))


def test_bundled_sample_loads_and_splits_into_disjoint_parts(sample):
    task, train_file, heldout_file = tabular.sample_path(SAMPLE)
    assert task == "sft" and train_file.is_file() and heldout_file.is_file()
    assert sample.task == "sft" and sample.columns == ["prompt", "response"] and not sample.notes
    assert len(sample.train) == 80 and len(sample.validation) == 20  # the held-out file is the validation split
    assert not {_norm(r["prompt"]) for r in sample.train} & {_norm(r["prompt"]) for r in sample.validation}
    assert all(r["response"].startswith("Short answer: ") for r in sample.train + sample.validation)
    with pytest.raises(InputError, match="sft data"):
        read_data(FinetuneRequest(task="classification", sample=SAMPLE))


def test_trained_format_reads_the_record_and_the_older_key(tmp_path):
    for meta, expected in [({"format": "completion"}, "completion"), ({"format": "chat"}, "chat"),
                           ({"prompt_format": "plain"}, "completion"), ({"prompt_format": "chat"}, "chat"), ({}, None)]:
        (tmp_path / ADAPTER_META).write_text(json.dumps(meta))
        assert sft.trained_format(tmp_path) == expected, meta


@pytest.fixture(scope="module")
def trained(prepared, sample, tmp_path_factory):
    """One 2-step run on the bundled sample; the trained model is caught on its way out of load_for_training."""
    seen = {}

    def spy(*args, **kwargs):
        lm = load_for_training(*args, **kwargs)
        seen["model"], seen["base_before"] = lm.model, _q_proj(lm.model).weight.detach().clone()
        return lm

    logs = []
    cfg = SFTConfig(output_dir=str(tmp_path_factory.mktemp("sft") / "adapter"), **dict(TINY, max_length=128))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sft, "load_for_training", spy)
        result = train_sft(sample.train[:8], sample.validation[:2], cfg, on_log=logs.append)
    return result, seen, logs


def test_two_steps_train_lora_only_and_save_an_adapter(trained):
    result, seen, logs = trained
    layer = _q_proj(seen["model"])  # now a LoRA layer wrapping the base Linear
    assert torch.equal(layer.base_layer.weight, seen["base_before"])
    assert layer.lora_B["default"].weight.abs().sum() > 0  # lora_B starts at zero
    assert not layer.base_layer.weight.requires_grad
    folder = Path(result.output_dir)
    assert {"adapter_config.json", "adapter_model.safetensors", ADAPTER_META} <= {p.name for p in folder.iterdir()}
    assert not folder.with_name(folder.name + ".tmp").exists()
    meta = json.loads((folder / ADAPTER_META).read_text())
    assert meta["task"] == "sft" and meta["base_model"] == CHAT and meta["format"] == "chat"
    assert meta["steps"] == 2 and not meta["stopped_early"] and meta["config"]["max_steps"] == 2
    assert meta["train_examples"] == 8 and meta["eval_examples"] == 2
    assert result.metrics["eval_loss"] > 0 and result.metrics["train_loss"] > 0
    assert logs and logs[-1]["step"] == 2


def test_saved_adapter_reloads_with_plain_peft(trained):
    from peft import PeftModel

    result, seen, _ = trained
    ids = torch.tensor([[1, 4093, 198, 1780, 314, 216, 34, 27, 34, 47, 2]])
    model = seen["model"].eval()
    base = load_for_training(CHAT, head="causal-lm", quantize="none").model
    reloaded = PeftModel.from_pretrained(base, result.output_dir).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-4)
        with reloaded.disable_adapter():  # and the adapter does change the output
            assert not torch.allclose(reloaded(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-4)


def _chat_reference_ppl(lm, rows: list[dict]) -> float:
    """exp(mean NLL) of the tokens the chat template adds for the assistant's answer, by a plain forward pass."""
    tok, nll, count = lm.tokenizer, 0.0, 0
    for row in rows:
        user = [{"role": "user", "content": row["prompt"]}]
        prompt = list(tok.apply_chat_template(user, add_generation_prompt=True, return_dict=True)["input_ids"])
        full = list(tok.apply_chat_template(user + [{"role": "assistant", "content": row["response"]}],
                                            return_dict=True)["input_ids"])
        assert full[:len(prompt)] == prompt
        with torch.no_grad():
            logits = lm.model(input_ids=torch.tensor([full])).logits[0].float()
        # Position p predicts token p + 1; the answer (and its <|im_end|>\n) starts at len(prompt).
        nll += float(torch.nn.functional.cross_entropy(logits[len(prompt) - 1:-1], torch.tensor(full[len(prompt):]),
                                                       reduction="sum"))
        count += len(full) - len(prompt)
    return math.exp(nll / count)


def test_chat_response_perplexity_is_exp_mean_nll_of_the_answer(trained, sample):
    from lmdemo.eval.sft_eval import response_perplexity
    from lmdemo.models.loading import load

    result = trained[0]
    rows = sample.validation[:3]
    tuned = response_perplexity([dict(r) for r in rows], CHAT, adapter=result.output_dir)
    base = response_perplexity([dict(r) for r in rows], CHAT, fmt="chat")
    assert tuned.metrics["perplexity"] == pytest.approx(
        _chat_reference_ppl(load(CHAT, adapter=result.output_dir), rows), rel=1e-4)
    assert base.metrics["perplexity"] == pytest.approx(_chat_reference_ppl(load(CHAT), rows), rel=1e-4)
    assert tuned.metrics["perplexity"] != pytest.approx(base.metrics["perplexity"], rel=1e-4)
    assert "chat format" in tuned.notes[0]


def test_comparison_reports_the_response_perplexity_and_chats_side_by_side(trained, sample):
    from lmdemo.eval.compare import compare_base_and_adapter
    from lmdemo.eval.sft_eval import response_perplexity

    result = trained[0]
    rows = sample.validation[:2]
    out = compare_base_and_adapter("sft", rows, CHAT, result.output_dir, examples=1)
    expected = response_perplexity([dict(r) for r in rows], CHAT, adapter=result.output_dir).metrics
    assert out["metrics"]["fine-tuned"] == pytest.approx(expected)
    assert out["metrics"]["base"] == pytest.approx(response_perplexity([dict(r) for r in rows], CHAT, fmt="chat").metrics)
    (example,) = out["examples"]
    assert example["input"] == rows[0]["prompt"]
    assert example["base"].strip() and example["fine-tuned"].strip()
    assert not example["base"].startswith("(") and not example["fine-tuned"].startswith("(")  # no error shown


def test_stop_event_ends_training_after_one_step_and_still_saves(prepared, tmp_path):
    stop = threading.Event()
    stop.set()
    cfg = SFTConfig(output_dir=str(tmp_path / "adapter"), **TINY)
    result = train_sft(ROWS, [], cfg, stop_event=stop)
    meta = json.loads((tmp_path / "adapter" / ADAPTER_META).read_text())
    assert meta["steps"] == 1 and meta["stopped_early"]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "adapter.tmp").exists() and result.output_dir == str(tmp_path / "adapter")
