"""Evaluation job: score a model (or adapter) on a labelled set with lmdemo's offline `evaluate` metrics."""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

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


def _hub_records(dataset_id: str) -> list[tuple[int, dict]]:
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
    return [(i + 1, dict(row)) for i, row in enumerate(ds)]


def load_examples(path: str | Path, task: str, column_map: dict[str, str] | None = None) -> list[dict]:
    """Rows of a JSONL/CSV eval file, or of a Hub dataset id, with the task's fields.

    ``column_map`` renames source columns to the task's fields (file column -> field).
    """
    task = task_name(task)
    rename = column_map or {}
    if not Path(path).exists() and hub_shaped(str(path).split(":")[0]):
        return _rows(_hub_records(str(path)), task, rename, str(path))
    path = Path(path)
    content = read_text(path, MAX_FILE_BYTES)
    if path.suffix.lower() in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(content), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        records = [(i + 2, r) for i, r in enumerate(reader)]  # line 1 is the header
    else:
        records = []
        for number, line in enumerate(content.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path.name} line {number}: not valid JSON ({exc.msg}).") from None
            if not isinstance(record, dict):
                raise InputError(f"{path.name} line {number}: expected a JSON object.")
            records.append((number, record))
    return _rows(records, task, rename, path.name)


def _rows(records: list[tuple[int, dict]], task: str, rename: dict[str, str], source: str) -> list[dict]:
    """Rename columns and check every record has the task's fields, naming the first bad line."""
    rows: list[dict] = []
    for number, record in records:
        row = {rename.get(k, k): v for k, v in record.items()}
        missing = [f for f in FIELDS[task] if f not in row]
        if missing:
            raise InputError(f"{source} line {number}: missing field(s) {', '.join(missing)} for {task} "
                             f"(has {', '.join(map(str, record))}; map columns with --columns old=new).")
        empty = [f for f in FIELDS[task] if row[f] is None or not str(row[f]).strip()]
        if empty:
            raise InputError(f"{source} line {number}: empty {', '.join(empty)}.")
        rows.append(row)
    if not rows:
        raise InputError(f"{source} has no examples.")
    return rows


def run(task: str, data: str | Path | None = None, model: str | None = None, adapter: str | None = None,
        limit: int | None = None, column_map: dict[str, str] | None = None,
        on_progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Predict every example and score the predictions; rows keep their fields plus `prediction`."""
    task = task_name(task)
    rows = load_examples(data or bundled_path(task), task, column_map)
    if limit is not None:
        if int(limit) < 1:
            raise InputError(f"`limit` must be at least 1; got {limit}")
        rows = rows[: int(limit)]
    dataset = str(data) if data else f"lmdemo bundled {task} set"
    if data and Path(data).exists():
        bundled = Path(data).resolve() == bundled_path(task).resolve()
        dataset = f"lmdemo bundled {task} set" if bundled else Path(data).name
    return run_rows(task, rows, model, adapter, on_progress, dataset=dataset)


def run_rows(task: str, rows: list[dict], model: str | None = None, adapter: str | None = None,
             on_progress: Callable[[int, int], None] | None = None, dataset: str = "") -> EvalResult:
    """Predict and score rows that already carry the task's fields."""
    task = task_name(task)
    if task in ("sentiment", "classification") and not model and not adapter:
        from lmdemo.jobs.sentiment import DEFAULT_ADAPTER

        adapter = DEFAULT_ADAPTER  # the job's default, named in the result
    start = time.perf_counter()
    predict = {"sentiment": _classify, "classification": _classify, "translation": _translate,
               "summarisation": _summarise, "generation": _generation}[task]
    metrics, used_model = predict(rows, model, adapter, on_progress)
    return EvalResult(task, used_model, adapter, len(rows), metrics, round(time.perf_counter() - start, 2), rows,
                      dataset)


def _progress(rows, desc, on_progress):
    for i, row in enumerate(tqdm(rows, desc=desc, unit="ex")):
        yield row
        if on_progress:
            on_progress(i + 1, len(rows))


def _classify(rows, model, adapter, on_progress):
    from lmdemo.jobs.sentiment import classify
    from lmdemo.models.adapters import adapter_dir, adapter_meta
    from lmdemo.models.registry import resolve

    ref = resolve(model) if model else None
    if ref is not None and ref.builtin is not None and ref.builtin.task == "encoder" and not adapter:
        # A bare encoder has no classifier head: score it zero-shot on the set's label names.
        from lmdemo.jobs import zeroshot

        labels = sorted({str(r["label"]) for r in rows})
        predictions = zeroshot.classify([r["text"] for r in rows], labels, model)
        for row, (label, _) in zip(rows, predictions):
            row["prediction"] = label
    else:
        results = []
        batch = 32
        for i in tqdm(range(0, len(rows), batch), desc="classify", unit="batch"):
            results += classify([r["text"] for r in rows[i:i + batch]], model=model, adapter=adapter)
            if on_progress:
                on_progress(min(i + batch, len(rows)), len(rows))
        for row, res in zip(rows, results):
            row["prediction"] = res.label
    preds, refs = [r["prediction"] for r in rows], [str(r["label"]) for r in rows]
    scores = load_metric("accuracy").compute(predictions=preds, references=refs)
    scores.update({"f1": load_metric("f1").compute(predictions=preds, references=refs, average="macro")["f1"]})
    used = model or adapter_meta(adapter_dir(adapter)).get("base_model", "")  # run_rows names the default adapter
    return {"accuracy": scores["accuracy"], "f1": scores["f1"]}, used


def _translate(rows, model, adapter, on_progress):
    from lmdemo.jobs.translation import TranslationRequest, translate

    for row in _progress(rows, "translate", on_progress):
        req = TranslationRequest(row["source"], row["source_lang"], row["target_lang"], model=model, adapter=adapter)
        row["prediction"] = translate(req).translation
    preds, refs = [r["prediction"] for r in rows], [[r["reference"]] for r in rows]
    # sacrebleu's zh tokenizer splits Chinese characters and treats other text like 13a.
    tokenize = "zh" if any(r["target_lang"] == "zh" for r in rows) else "13a"
    bleu = load_metric("sacrebleu").compute(predictions=preds, references=refs, tokenize=tokenize)["score"]
    chrf = load_metric("chrf").compute(predictions=preds, references=refs)["score"]
    return {"bleu": bleu, "chrf": chrf}, req.model


def _summarise(rows, model, adapter, on_progress):
    from lmdemo.jobs.summarization import SummaryRequest, summarize

    for row in _progress(rows, "summarise", on_progress):
        req = SummaryRequest(row["text"], length=2, model=model, adapter=adapter)
        row["prediction"] = summarize(req).summary
    scores = load_metric("rouge").compute(predictions=[r["prediction"] for r in rows],
                                          references=[r["summary"] for r in rows])
    return {k: scores[k] for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")}, req.model


def _generation(rows, model, adapter, on_progress):
    from lmdemo.models.loading import load
    from lmdemo.models.registry import DEFAULT_CHAT_MODEL

    name = model or DEFAULT_CHAT_MODEL
    lm = load(name, adapter=adapter)
    # Perplexity of each reference response after its prompt: lower means the model expects such answers.
    texts = [f"{r['prompt']}\n{r['response']}" for r in rows]
    scores = load_metric("perplexity").compute(predictions=texts, model=lm.model, tokenizer=lm.tokenizer)
    for row, ppl in zip(rows, scores["perplexities"]):
        row["prediction"] = ppl
    if on_progress:
        on_progress(len(rows), len(rows))
    return {"perplexity": scores["perplexity"]}, name


def save(result: EvalResult, path: str | Path) -> Path:
    """Write the summary JSON (reused later by model cards)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.summary(), indent=2, ensure_ascii=False))
    return path


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


@dataclass
class EvalRequest:
    """Score one or more models (built-ins, folders, Hub ids, adapter names) on the same rows."""

    task: str = field(default="sentiment", metadata={"help": "sentiment, classification, translation, "
                                                               "summarisation or generation"})
    data: str | None = field(default=None, metadata={"help": "JSONL/CSV file or Hub dataset id "
                                                               "(default: the bundled set)"})
    models: list[str] = field(default_factory=lambda: ["default"],
                              metadata={"help": "models to compare; default = the task's default model"})
    limit: int | None = field(default=50, metadata={"help": "score the first N examples"})
    columns: dict[str, str] = field(default_factory=dict, metadata={"help": "file column -> task field"})

    def __post_init__(self) -> None:
        self.task = task_name(self.task)
        if isinstance(self.models, str):
            self.models = [m for m in self.models.replace("\n", ",").split(",")]
        self.models = [str(m).strip() for m in self.models if str(m).strip()] or ["default"]
        if len(self.models) > MAX_MODELS:
            raise InputError(f"{len(self.models)} models given; one comparison takes at most {MAX_MODELS}.")
        if self.limit is not None:
            try:
                self.limit = int(self.limit)
            except (TypeError, ValueError):
                raise InputError(f"`limit` must be a whole number; got {self.limit!r}") from None
            if self.limit < 1:
                raise InputError(f"`limit` must be at least 1; got {self.limit}")


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

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "results": [dict(r.summary(), label=label) for label, r in self.results]}


def compare_models(req: EvalRequest, on_progress: Callable[[int, int], None] | None = None) -> EvalComparison:
    """Each model of the request scored on the same rows."""
    from lmdemo.models.adapters import resolve_pick

    results = []
    for label in req.models:
        model, adapter = resolve_pick(label)
        results.append((label, run(req.task, req.data, model=model, adapter=adapter, limit=req.limit,
                                   column_map=req.columns, on_progress=on_progress)))
    return EvalComparison(req.task, results)


run_request = compare_models  # the job shape: a request in, a result with to_dict() out
