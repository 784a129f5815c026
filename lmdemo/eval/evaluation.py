"""Evaluation job: score a model (or adapter) on a labelled set with lmdemo's offline `evaluate` metrics."""

from __future__ import annotations

import csv
import io
import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from tqdm.auto import tqdm

from lmdemo.config import DEMO_LIMITS, get_settings
from lmdemo.errors import InputError
from lmdemo.data.files import read_text
from lmdemo.eval.metrics import load_metric
from lmdemo.models.registry import hub_shaped

TASKS = ("sentiment", "classification", "translation", "summarisation", "generation")
ALIASES = {"summarization": "summarisation"}
FIELDS = {
    "sentiment": ("text", "label"),
    "classification": ("text", "label"),
    "translation": ("source", "reference", "source_lang", "target_lang"),
    "summarisation": ("text", "summary"),
    "generation": ("prompt", "response"),
}
BUNDLED = {
    "sentiment": "sentiment.jsonl",
    "classification": "sentiment.jsonl",
    "translation": "translation.jsonl",
    "summarisation": "summarization.jsonl",
    "generation": "generation.jsonl",
}
MAX_FILE_BYTES = 50 * 2**20
MAX_ROWS = 10_000  # rows read from one file or Hub split at most: past this an evaluation is a batch job
MAX_FIELD_CHARS = 20_000  # per field, as the sentiment job reads; longer values are cut, with a note
MAX_EVAL_TOKENS = 2048  # tokens per row a perplexity reads (the metric's default); demo mode: DEMO_LIMITS


class Stopped(InputError):
    """An evaluation was stopped (its `stop` event set) before it scored every example."""


@dataclass
class EvalResult:
    task: str
    model: str
    adapter: str | None
    n: int
    metrics: dict[str, float]
    seconds: float
    predictions: list[dict] = field(default_factory=list, repr=False)
    dataset: str = ""  # file name, Hub id or description of the rows scored (model cards cite it)
    notes: list[str] = field(default_factory=list)  # what was cut or capped, in words for the user

    def summary(self) -> dict:
        """The JSON object `lmdemo eval --json` prints (no per-example rows)."""
        out = asdict(self)
        out.pop("predictions")
        return out

    to_dict = summary


def task_name(task: str) -> str:
    task = ALIASES.get(task, task)
    if task not in TASKS:
        raise InputError(f"Unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return task


def bundled_path(task: str) -> Path:
    return Path(str(files("lmdemo.data").joinpath("eval", BUNDLED[task_name(task)])))


def _hub_records(dataset_id: str) -> Iterator[tuple[int, dict]]:
    """Rows of a Hub dataset ("user/name" or "user/name:split", default split "test") through `datasets`."""
    from datasets import load_dataset

    from lmdemo.models.hub import read_token

    name, _, split = dataset_id.partition(":")
    try:
        ds = load_dataset(name, split=split or "test", token=read_token())
    except Exception as exc:  # datasets raises many types for offline / missing / gated
        from lmdemo.models.hub import hub_reachable

        why = "the Hub is unreachable (offline)" if not hub_reachable() else str(exc).splitlines()[0]
        raise InputError(f"Dataset {dataset_id!r} is not a local file and could not be loaded from the Hub: {why}.") from None
    return ((i + 1, dict(row)) for i, row in enumerate(ds))  # lazy: the reader stops at its row cap


def load_examples(path: str | Path, task: str, column_map: dict[str, str] | None = None,
                  limit: int | None = None, *, source: str | None = None, target: str | None = None) -> list[dict]:
    """Rows of a JSONL/CSV eval file, or of a Hub dataset id, with the task's fields.

    ``column_map`` renames source columns to the task's fields (file column -> field). Reading stops after
    ``limit`` rows, and after MAX_ROWS in any case; string fields are cut at MAX_FIELD_CHARS characters.
    Translation rows without their own ``source_lang``/``target_lang`` take ``source``/``target`` (None: the
    translate job's defaults).
    """
    return _read(path, task, column_map, limit, source, target)[0]


def translation_languages(source: str | None = None, target: str | None = None) -> tuple[str, str]:
    """Checked (source, target) codes for translation rows that name none; None is `lmdemo translate`'s default."""
    from lmdemo.data.languages import LANGUAGES
    from lmdemo.jobs.base import defaults
    from lmdemo.jobs.translation import TranslationRequest

    default = defaults(TranslationRequest)  # the translate job's own defaults: one place for every face
    codes = []
    for key, code in (("source", source), ("target", target)):
        code = str(default[key] if code is None or not str(code).strip() else code).strip().lower()
        if code not in LANGUAGES:  # worded as TranslationRequest words it
            raise InputError(f"`{key}` language {code!r} is not supported; choose one of {', '.join(LANGUAGES)}")
        codes.append(code)
    if codes[0] == codes[1]:
        raise InputError(f"Source and target language are both {LANGUAGES[codes[0]]}.")
    return codes[0], codes[1]


def _with_languages(row: dict, languages: tuple[str, str], where: str) -> bool:
    """Give a translation row the default languages where it names none, and check its codes; True if filled."""
    from lmdemo.data.languages import LANGUAGES

    filled = False
    for key, default in zip(("source_lang", "target_lang"), languages):
        if row.get(key) is None or not str(row[key]).strip():
            row[key], filled = default, True
        code = str(row[key]).strip().lower()
        if code not in LANGUAGES:
            raise InputError(f"{where}: `{key}` {code!r} is not supported; choose one of {', '.join(LANGUAGES)}")
        row[key] = code
    return filled


def _read(path: str | Path, task: str, column_map: dict[str, str] | None, limit: int | None,
          source: str | None = None, target: str | None = None) -> tuple[list[dict], bool, list[str]]:
    """(rows, whether the source had more rows than were read, notes on cut fields and filled-in languages)."""
    task = task_name(task)
    rename = column_map or {}
    languages = translation_languages(source, target) if task == "translation" else None
    if not Path(path).exists() and hub_shaped(str(path).split(":")[0]):
        return _rows(_hub_records(str(path)), task, rename, str(path), limit, languages)
    path = Path(path)
    content = read_text(path, MAX_FILE_BYTES)
    if path.suffix.lower() in (".csv", ".tsv"):
        records = _csv_records(content, "\t" if path.suffix.lower() == ".tsv" else ",", path.name)
    else:
        records = _jsonl_records(content, path.name)
    return _rows(records, task, rename, path.name, limit, languages)


def _csv_records(content: str, delimiter: str, source: str) -> Iterator[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(content), delimiter=delimiter)
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field over csv's 131,072-character limit, a NUL byte
            raise InputError(f"{source} line {reader.line_num + 1}: not valid CSV ({exc}).") from None
        yield reader.line_num, record  # the line the record ends on (line 1 is the header)


def _jsonl_records(content: str, source: str) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(io.StringIO(content), 1):  # line by line: no second copy of the file
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{source} line {number}: not valid JSON ({exc.msg}).") from None
        if not isinstance(record, dict):
            raise InputError(f"{source} line {number}: expected a JSON object.")
        yield number, record


def _rows(records: Iterable[tuple[int, dict]], task: str, rename: dict[str, str], source: str,
          limit: int | None = None, languages: tuple[str, str] | None = None) -> tuple[list[dict], bool, list[str]]:
    """Rename columns and check every record has the task's fields, naming the first bad line.

    Reads at most ``limit`` (and MAX_ROWS) records; returns the rows, whether more were left, and notes.
    ``languages``: (source, target) for translation rows without their own.
    """
    wanted = min(limit or MAX_ROWS, MAX_ROWS)
    records = iter(records)
    rows: list[dict] = []
    cut: list[str] = []
    filled = 0
    for number, record in islice(records, wanted):
        row = {rename.get(k, k): v for k, v in record.items()}
        if languages is not None:
            filled += _with_languages(row, languages, f"{source} line {number}")
        missing = [f for f in FIELDS[task] if f not in row]
        if missing:
            raise InputError(f"{source} line {number}: missing field(s) {', '.join(missing)} for {task} "
                             f"(has {', '.join(map(str, record))}; map columns with --columns old=new).")
        empty = [f for f in FIELDS[task] if row[f] is None or not str(row[f]).strip()]
        if empty:
            raise InputError(f"{source} line {number}: empty {', '.join(empty)}.")
        for key, value in row.items():
            if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
                row[key] = value[:MAX_FIELD_CHARS]
                cut.append(f"line {number} `{key}`")
        rows.append(row)
    if not rows:
        raise InputError(f"{source} has no examples.")
    try:
        more = next(records, None) is not None
    except InputError:  # the next line is bad, but it is past what was asked for
        more = True
    notes = [f"{len(cut)} field(s) of {source} were over {MAX_FIELD_CHARS:,} characters and were cut to their "
             f"first {MAX_FIELD_CHARS:,} (first: {cut[0]})."] if cut else []
    if filled:
        notes.append(_languages_note(filled, len(rows), languages))
    return rows, more, notes


def _languages_note(filled: int, total: int, languages: tuple[str, str]) -> str:
    from lmdemo.data.languages import LANGUAGES

    return (f"{filled} of {total} example(s) name no source_lang/target_lang: translated "
            f"{LANGUAGES[languages[0]]} → {LANGUAGES[languages[1]]}.")


def _checked_limit(limit: Any) -> int:
    try:
        limit = int(limit)
    except (TypeError, ValueError):
        raise InputError(f"`limit` must be a whole number; got {limit!r}") from None
    if limit < 1:
        raise InputError(f"`limit` must be at least 1; got {limit}")
    return limit


def _row_cap(limit: int | None) -> tuple[int, str]:
    """How many rows to read (`limit`, lowered to the shared app's cap or MAX_ROWS) and the note if it was lowered."""
    limit = None if limit is None else _checked_limit(limit)
    cap = DEMO_LIMITS.max_eval_rows
    if get_settings().demo_mode and (limit is None or limit > cap):
        asked = "every example" if limit is None else f"{limit} examples"
        return cap, f"This shared app scores at most {cap} examples per model: {asked} asked, the first {cap} scored."
    if limit is None or limit > MAX_ROWS:
        return MAX_ROWS, f"Evaluation reads at most {MAX_ROWS:,} rows: the first {MAX_ROWS:,} were scored."
    return limit, ""


def run(task: str, data: str | Path | None = None, model: str | None = None, adapter: str | None = None,
        limit: int | None = None, column_map: dict[str, str] | None = None,
        on_progress: Callable[[int, int], None] | None = None, stop: threading.Event | None = None, *,
        source: str | None = None, target: str | None = None) -> EvalResult:
    """Predict every example and score the predictions; rows keep their fields plus `prediction`.

    At most ``limit`` rows are read (a shared app caps it); setting ``stop`` raises Stopped before the next example.
    Translation rows without ``source_lang``/``target_lang`` take ``source``/``target`` (None: translate's defaults).
    """
    task = task_name(task)
    limit, capped = _row_cap(limit)
    rows, more, notes = _read(data or bundled_path(task), task, column_map, limit, source, target)
    dataset = str(data) if data else f"lmdemo bundled {task} set"
    if data and Path(data).exists():
        bundled = Path(data).resolve() == bundled_path(task).resolve()
        dataset = f"lmdemo bundled {task} set" if bundled else Path(data).name
    result = run_rows(task, rows, model, adapter, on_progress, dataset=dataset, stop=stop)
    result.notes[:0] = ([capped] if capped and more else []) + notes
    return result


def run_rows(task: str, rows: list[dict], model: str | None = None, adapter: str | None = None,
             on_progress: Callable[[int, int], None] | None = None, dataset: str = "",
             stop: threading.Event | None = None, *, source: str | None = None,
             target: str | None = None) -> EvalResult:
    """Predict and score rows that already carry the task's fields; ``stop`` ends it between examples.

    Translation rows may leave out ``source_lang``/``target_lang``: they take ``source``/``target`` (None: the
    translate job's defaults)."""
    task = task_name(task)
    filled_note = []
    if task == "translation":
        languages = translation_languages(source, target)
        filled = sum(_with_languages(row, languages, f"example {i}") for i, row in enumerate(rows, 1))
        filled_note = [_languages_note(filled, len(rows), languages)] if filled else []
    if task in ("sentiment", "classification") and not model and not adapter:
        from lmdemo.jobs.sentiment import DEFAULT_ADAPTER

        adapter = DEFAULT_ADAPTER  # the job's default, named in the result
    if task == "summarisation" and not model and not adapter:
        from lmdemo.jobs.summarization import SummaryRequest

        default = SummaryRequest("-")  # the one-sentence default: the bundled LoRA and its base, named in the result
        model, adapter = default.model, default.adapter
    start = time.perf_counter()
    predict = {"sentiment": _classify, "classification": _classify, "translation": _translate,
               "summarisation": _summarise, "generation": _generation}[task]
    metrics, used_model, notes = predict(rows, model, adapter, on_progress, stop)
    return EvalResult(task, used_model, adapter, len(rows), metrics, round(time.perf_counter() - start, 2), rows,
                      dataset, filled_note + notes)


def _check_stop(stop: threading.Event | None, done: int, total: int) -> None:
    if stop is not None and stop.is_set():
        raise Stopped(f"Evaluation stopped after {done} of {total} examples.")


def _progress(rows, desc, on_progress, stop):
    """Each row in turn, reporting progress after it; Stopped before the next one once ``stop`` is set."""
    for i, row in enumerate(tqdm(rows, desc=desc, unit="ex")):
        _check_stop(stop, i, len(rows))
        yield row
        if on_progress:
            on_progress(i + 1, len(rows))


def _classify(rows, model, adapter, on_progress, stop):
    from lmdemo.jobs.sentiment import classify
    from lmdemo.models.adapters import adapter_dir, adapter_meta
    from lmdemo.models.families import describe

    info = describe(model) if model and not adapter else None
    if info is not None and info.family == "encoder":
        # A bare encoder has no classifier head: score it zero-shot on the set's label names.
        from lmdemo.jobs import zeroshot

        labels = sorted({str(r["label"]) for r in rows})

        def predict(texts):
            return [label for label, _ in zeroshot.classify(texts, labels, model)]
    else:
        def predict(texts):
            return [res.label for res in classify(texts, model=model, adapter=adapter)]
    batch = 32
    for i in tqdm(range(0, len(rows), batch), desc="classify", unit="batch"):
        _check_stop(stop, i, len(rows))
        chunk = rows[i:i + batch]
        for row, label in zip(chunk, predict([r["text"] for r in chunk])):
            row["prediction"] = label
        if on_progress:
            on_progress(i + len(chunk), len(rows))
    # A ready classifier's labels may differ in case only ("POSITIVE" for the set's "positive").
    preds = [str(r["prediction"]).strip().lower() for r in rows]
    refs = [str(r["label"]).strip().lower() for r in rows]
    scores = load_metric("accuracy").compute(predictions=preds, references=refs)
    scores.update({"f1": load_metric("f1").compute(predictions=preds, references=refs, average="macro")["f1"]})
    used = model or adapter_meta(adapter_dir(adapter)).get("base_model", "")  # run_rows names the default adapter
    return {"accuracy": scores["accuracy"], "f1": scores["f1"]}, used, []


def _translate(rows, model, adapter, on_progress, stop):
    from lmdemo.jobs.translation import TranslationRequest, translate

    for row in _progress(rows, "translate", on_progress, stop):
        req = TranslationRequest(row["source"], row["source_lang"], row["target_lang"], model=model, adapter=adapter)
        row["prediction"] = translate(req).translation
    preds, refs = [r["prediction"] for r in rows], [[r["reference"]] for r in rows]
    # sacrebleu's zh tokenizer splits Chinese characters and treats other text like 13a.
    tokenize = "zh" if any(r["target_lang"] == "zh" for r in rows) else "13a"
    bleu = load_metric("sacrebleu").compute(predictions=preds, references=refs, tokenize=tokenize)["score"]
    chrf = load_metric("chrf").compute(predictions=preds, references=refs)["score"]
    return {"bleu": bleu, "chrf": chrf}, req.model, []


def _summarise(rows, model, adapter, on_progress, stop):
    from lmdemo.jobs.summarization import SummaryRequest, summarize

    for row in _progress(rows, "summarise", on_progress, stop):
        req = SummaryRequest(row["text"], model=model, adapter=adapter)  # the job's own defaults
        row["prediction"] = summarize(req).summary
    scores = load_metric("rouge").compute(predictions=[r["prediction"] for r in rows],
                                          references=[r["summary"] for r in rows])
    return {k: scores[k] for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")}, req.model, []


def _generation(rows, model, adapter, on_progress, stop):
    from lmdemo.models import families
    from lmdemo.models.loading import load
    from lmdemo.models.registry import DEFAULT_CHAT_MODEL

    name = model or DEFAULT_CHAT_MODEL
    if families.is_remote(name):
        raise InputError(f"{name!r} is a remote engine: the generation task scores perplexity, which needs a local "
                         "model (its logits); evaluate a remote engine on translation or summarisation.")
    lm = load(name, adapter=adapter)
    # One row per call, cut to the token cap: memory stays that of one capped row however long the rows are.
    cap = DEMO_LIMITS.max_eval_tokens if get_settings().demo_mode else MAX_EVAL_TOKENS
    metric = load_metric("perplexity", keep_in_memory=True)  # no cache file written per call
    nll, scored, cut, longest = 0.0, 0, 0, 0
    for row in _progress(rows, "perplexity", on_progress, stop):
        # Perplexity of each reference response after its prompt: lower means the model expects such answers.
        score = metric.compute(predictions=[f"{row['prompt']}\n{row['response']}"], model=lm.model,
                               tokenizer=lm.tokenizer, max_length=cap, details=True)
        row["prediction"] = score["perplexities"][0]
        nll, scored = nll + score["nll_sums"][0], scored + score["scored_tokens"][0]
        if score["tokens"][0] > score["max_length"]:
            cut, longest, cap = cut + 1, max(longest, score["tokens"][0]), score["max_length"]
    notes = [f"{cut} of {len(rows)} example(s) were longer than {cap:,} tokens (the longest {longest:,}): "
             f"each was scored on its first {cap:,} tokens only."] if cut else []
    return {"perplexity": math.exp(nll / scored)}, name, notes


def save(result: EvalResult, path: str | Path, **extra: Any) -> Path:
    """Write the summary JSON (reused later by model cards), with any ``extra`` keys (the comparison's `paired`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(result.summary(), **extra), indent=2, ensure_ascii=False))
    return path


# Per task: the per-example score paired comparisons use, and whether higher is better. Classification scores
# 0/1 (its mean is accuracy); translation sentence-level chrF (character based: it stays informative on one
# sentence, where sentence BLEU is mostly 0); summarisation ROUGE-L (its mean is the reported rougeL);
# generation the row's perplexity (prompt + response, as scored), lower being better.
EXAMPLE_SCORES = {"sentiment": ("accuracy", True), "classification": ("accuracy", True),
                  "translation": ("chrf", True), "summarisation": ("rougeL", True),
                  "generation": ("perplexity", False)}


def example_scores(task: str, rows: list[dict]) -> tuple[str, bool, list[float]]:
    """(metric, higher_is_better, one score per row) of scored rows (an EvalResult's `predictions`)."""
    task = task_name(task)
    metric, higher = EXAMPLE_SCORES[task]
    if not rows:
        return metric, higher, []
    if task in ("sentiment", "classification"):  # compared as _classify compares them
        scores = [float(str(r["prediction"]).strip().lower() == str(r["label"]).strip().lower()) for r in rows]
    elif task == "translation":
        scores = load_metric("chrf").compute(predictions=[r["prediction"] for r in rows],
                                             references=[[r["reference"]] for r in rows], per_example=True)["scores"]
    elif task == "summarisation":
        scores = load_metric("rouge").compute(predictions=[r["prediction"] for r in rows],
                                              references=[r["summary"] for r in rows], rouge_types=["rougeL"],
                                              use_aggregator=False)["rougeL"]
    else:
        scores = [r["prediction"] for r in rows]  # _generation's per-row perplexity
    return metric, higher, [float(x) for x in scores]


def paired_comparison(base: EvalResult, tuned: EvalResult, **bootstrap: Any) -> dict[str, Any]:
    """`paired_bootstrap` of two results scored on the same rows, on the task's per-example score
    (evaluation.EXAMPLE_SCORES): {"metric", "higher_is_better", "wins", "losses", "ties", "difference",
    "ci95": [low, high], "n", "resamples", "seed"}."""
    if base.task != tuned.task or base.n != tuned.n:
        raise ValueError(f"paired comparison needs the same task and rows: {base.task}/{base.n} vs "
                         f"{tuned.task}/{tuned.n}")
    from lmdemo.eval.stats import paired_bootstrap

    metric, higher, base_scores = example_scores(base.task, base.predictions)
    tuned_scores = example_scores(tuned.task, tuned.predictions)[2]
    return {"metric": metric, **paired_bootstrap(base_scores, tuned_scores, higher, **bootstrap)}


def write_predictions(result: EvalResult, path: str | Path) -> Path:
    """One JSON line per example: its own fields plus `prediction`."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as handle:
        for row in result.predictions:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


# ---------------------------------------------------------------- several models on one set

REFERENCE = {"sentiment": "label", "classification": "label", "translation": "reference",
             "summarisation": "summary", "generation": "response"}
MAX_MODELS = 4  # each model scores every row: more than this is a batch job, not a comparison


def _check_models(models: list[str]) -> None:
    """At most MAX_MODELS models, and DEMO_LIMITS.max_eval_models on a shared app."""
    if get_settings().demo_mode and len(models) > DEMO_LIMITS.max_eval_models:
        raise InputError(f"{len(models)} models given; this shared app compares at most "
                         f"{DEMO_LIMITS.max_eval_models} at a time.")
    if len(models) > MAX_MODELS:
        raise InputError(f"{len(models)} models given; one comparison takes at most {MAX_MODELS}.")


@dataclass
class EvalRequest:
    """Score one or more models (built-ins, folders, Hub ids, adapter names) on the same rows."""

    task: str = field(default="sentiment", metadata={"help": "sentiment, classification, translation, "
                                                               "summarisation or generation"})
    data: str | None = field(default=None, metadata={"help": "JSONL/CSV file or Hub dataset id "
                                                               "(default: the bundled set)"})
    models: list[str] = field(default_factory=lambda: ["default"],
                              metadata={"help": "models to compare; default = the task's default model"})
    limit: int | None = field(default=50, metadata={"help": "score the first N examples (a shared app caps N)"})
    columns: dict[str, str] = field(default_factory=dict, metadata={"help": "file column -> task field"})
    source: str | None = field(default=None, metadata={"help": "translation: language of rows without a "
                                                                 "`source_lang` (default: translate's)"})
    target: str | None = field(default=None, metadata={"help": "translation: language of rows without a "
                                                                 "`target_lang` (default: translate's)"})

    def __post_init__(self) -> None:
        self.task = task_name(self.task)
        if self.task == "translation":  # checked here, before any model loads; other tasks ignore them
            self.source, self.target = translation_languages(self.source, self.target)
        if isinstance(self.models, str):
            self.models = [m for m in self.models.replace("\n", ",").split(",")]
        self.models = [str(m).strip() for m in self.models if str(m).strip()] or ["default"]
        _check_models(self.models)
        if self.limit is not None:
            self.limit = _checked_limit(self.limit)  # `run` lowers it to the demo cap, with a note


@dataclass
class EvalComparison:
    task: str
    results: list[tuple[str, EvalResult]]  # (label as typed, result)

    def metrics_rows(self) -> tuple[list[str], list[list]]:
        """Header and one row per model: label, n, then each metric."""
        names = list(self.results[0][1].metrics)
        return ["model", "n", *names], [[label, r.n, *[round(r.metrics[m], 4) for m in names]]
                                         for label, r in self.results]

    def examples(self, width: int = 200) -> list[dict[str, str]]:
        """Per example: input, reference and each model's prediction (a wrong label marked ✗)."""
        ref = REFERENCE[self.task]
        first = self.results[0][1].predictions
        rows = []
        for i, row in enumerate(first):
            out = {"input": str(row.get("text") or row.get("source") or row.get("prompt"))[:width],
                   "reference": str(row[ref])[:width]}
            for label, res in self.results:
                pred = res.predictions[i]["prediction"]
                wrong = ref == "label" and str(pred) != str(row[ref])
                out[label] = str(pred)[:width] + ("  ✗" if wrong else "")
            rows.append(out)
        return rows

    def paired(self) -> dict[str, Any] | None:
        """With exactly two models: the second against the first, example by example (wins / losses / ties and a
        bootstrap 95 % interval of the difference, see compare.paired_comparison); else None."""
        if len(self.results) != 2:
            return None
        (first, a), (second, b) = self.results
        return {"first": first, "second": second, **paired_comparison(a, b)}

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "results": [dict(r.summary(), label=label) for label, r in self.results],
                "paired": self.paired()}


def compare_models(req: EvalRequest, on_progress: Callable[[int, int], None] | None = None,
                   stop: threading.Event | None = None, owner: str | None = None) -> EvalComparison:
    """Each model of the request scored on the same rows; setting ``stop`` raises Stopped before the next example.
    ``owner``: whose adapters a bare name means (a visitor of a shared app; None: the operator's)."""
    from lmdemo.models.adapters import resolve_pick

    _check_models(req.models)  # again: demo mode may have been switched on since the request was built
    results = []
    for number, label in enumerate(req.models, 1):
        model, adapter = resolve_pick(label, owner)
        try:
            results.append((label, run(req.task, req.data, model=model, adapter=adapter, limit=req.limit,
                                       column_map=req.columns, on_progress=on_progress, stop=stop,
                                       source=req.source, target=req.target)))
        except Stopped as exc:
            if len(req.models) == 1:
                raise
            raise Stopped(f"{str(exc).rstrip('.')} of model {number} of {len(req.models)} ({label!r}).") from None
    return EvalComparison(req.task, results)


run_request = compare_models  # the job shape: a request in, a result with to_dict() out
