"""`python -m lmdemo`: command-line entry point. Library errors become one-line messages and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from lmdemo.models import store
from lmdemo.config import ConfigError
from lmdemo.errors import LmdemoError
from lmdemo.models.registry import BUILTINS


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_models(args: argparse.Namespace) -> int:
    rows = []
    for name, model in BUILTINS.items():
        st = store.status(name)
        rows.append({"name": name, "status": st.state, "size_bytes": st.size_bytes, "params": model.params,
                     "task": model.task, "good_for": model.good_for, "licence": model.licence,
                     "source": " + ".join(p.requirement for p in model.source.packages), "hub_id": model.hub_id})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'name':<24}{'status':<9}{'size':>10}  {'params':<7}{'licence':<12}good for"
    print(header)
    for r in rows:
        size = _human(r["size_bytes"]) if r["size_bytes"] else "-"
        print(f"{r['name']:<24}{r['status']:<9}{size:>10}  {r['params']:<7}{r['licence']:<12}{r['good_for']}")
    print("\nsources:", "; ".join(f"{r['name']} <- PyPI {r['source']}" for r in rows))
    print("Any Hub id or local model folder can be typed wherever a model name is asked for.")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    for path in store.prepare(args.names or None):
        print(f"ready: {path}")
    return 0


def _read_input(args: argparse.Namespace) -> str:
    if getattr(args, "file", None):
        from lmdemo.errors import InputError
        from lmdemo.data.files import read_text

        try:
            # the upload checks the app applies (size, empty, binary, UTF-8), with the app's 10 MB limit
            return read_text(args.file, 10 * 2**20)
        except OSError as exc:
            raise InputError(f"Cannot read {args.file}: {exc.strerror}") from None
    return " ".join(args.text) if isinstance(args.text, list) else (args.text or "")


def _emit(args: argparse.Namespace, obj: dict, plain: str) -> None:
    print(json.dumps(obj, ensure_ascii=False) if args.json else plain, flush=True)


def cmd_generate(args: argparse.Namespace) -> int:
    from lmdemo.jobs.generation import GenerationRequest, generate_stream
    from lmdemo.engine.streaming import GenerationParams

    params = GenerationParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                              top_k=args.top_k, repetition_penalty=args.repetition_penalty, seed=args.seed)
    req = GenerationRequest(" ".join(args.prompt), mode=args.mode, model=args.model, adapter=args.adapter,
                            quantize=args.quantize, params=params)
    shown, text, stats = 0, "", None
    for text, stats in generate_stream(req):
        if not args.json:
            print(text[shown:], end="", flush=True)
            shown = len(text)
    if args.json:
        _emit(args, {"text": text, "tokens": stats.tokens, "tokens_per_second": round(stats.tokens_per_second, 2)}, "")
    else:
        print(f"\n[{stats.tokens} tokens, {stats.tokens_per_second:.1f} tok/s, {stats.finish_reason}, {stats.backend}]",
              file=sys.stderr)
    return 0


def cmd_sentiment(args: argparse.Namespace) -> int:
    from lmdemo.jobs.sentiment import classify, read_texts

    texts = read_texts(args.file) if args.file else args.text
    for r in classify(texts, model=args.model, adapter=args.adapter):
        _emit(args, {"text": r.text, "label": r.label, "score": round(r.score, 4)}, f"{r.label}\t{r.score:.3f}\t{r.text}")
    return 0


def cmd_summarize(args: argparse.Namespace) -> int:
    from lmdemo.jobs.summarization import SummaryRequest, summarize

    unit, length = ("words", args.max_words) if args.max_words else ("sentences", args.sentences)
    res = summarize(SummaryRequest(_read_input(args), length=length, unit=unit, model=args.model, adapter=args.adapter))
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    _emit(args, {"summary": res.summary}, res.summary)
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from lmdemo.jobs.translation import TranslationRequest, translate

    text = _read_input(args)
    out = translate(TranslationRequest(text, args.source, args.target, model=args.model, adapter=args.adapter))
    _emit(args, {"source": text, "translation": out}, out)
    return 0


def cmd_perplexity(args: argparse.Namespace) -> int:
    from lmdemo.jobs.lmlab import score_text

    res = score_text(_read_input(args), model=args.model or "smollm2-135m-instruct", adapter=args.adapter)
    if res.note:
        print(f"note: {res.note}", file=sys.stderr)
    _emit(args, {"perplexity": res.perplexity, "tokens": [[t.token, t.logprob] for t in res.tokens]},
          f"perplexity {res.perplexity:.2f} over {len(res.tokens)} tokens (total log-prob {res.total_logprob:.2f})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from webui.app import launch

    launch(port=args.port, host=args.host)
    return 0


def cmd_train_sentiment(args: argparse.Namespace) -> int:
    from lmdemo.train.classifier import train_default

    overrides = {k: v for k, v in (("epochs", args.epochs), ("seed", args.seed)) if v is not None}
    result = train_default(args.out, **overrides)
    print(json.dumps(result, indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from lmdemo.eval import evaluation
    from lmdemo.errors import InputError

    mapping = {}
    for pair in args.columns or []:
        if "=" not in pair:
            raise InputError(f"--columns takes FILE_COLUMN=FIELD pairs; got {pair!r}")
        old, new = pair.split("=", 1)
        mapping[old] = new
    result = evaluation.run(args.task, args.data, model=args.model, adapter=args.adapter, limit=args.limit,
                            column_map=mapping)
    if args.predictions:
        evaluation.write_predictions(result, args.predictions)
    if args.save:
        evaluation.save(result, args.save)
    if args.json:
        print(json.dumps(result.summary(), ensure_ascii=False))
    else:
        print(f"{result.task} · {result.model}{' + ' + result.adapter if result.adapter else ''} · "
              f"{result.n} examples · {result.seconds:.1f} s")
        for name, value in result.metrics.items():
            print(f"  {name:<10} {value:.4f}")
    return 0


def output_folder(output: str) -> str:
    """A bare name goes into the adapters folder (so every model picker lists it); a path is used as given."""
    from lmdemo.models.adapters import new_adapter_path

    if "/" in output or output.startswith((".", "~")):
        return str(Path(output).expanduser())
    return str(new_adapter_path(output))


def cmd_finetune(args: argparse.Namespace) -> int:
    import signal
    import threading

    from lmdemo.data import tabular as datasets_io
    from lmdemo.errors import InputError

    task = {"sentiment": "classification"}.get(args.task, args.task)
    mapping = {}
    for column, field_ in ((args.text_column, "text"), (args.label_column, "label"),
                           (args.prompt_column, "prompt"), (args.response_column, "response")):
        if column:
            mapping[column] = field_
    data = datasets_io.prepare(args.data, task, mapping, validation=args.eval_data)
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    out = output_folder(args.output)
    common = {"output_dir": out, "learning_rate": args.lr, "lora_r": args.lora_r, "quantize": args.quantize,
              "epochs": args.epochs, "seed": args.seed}
    stop = threading.Event()

    def on_sigint(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after this step; the adapter trained so far will be saved (Ctrl-C again to abort)",
              file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        if task == "classification":
            from lmdemo.train.classifier import ClassifierTrainConfig, train_classifier

            cfg = ClassifierTrainConfig(base_model=args.base or "all-minilm-l6-v2",
                                        **{k: v for k, v in common.items() if v is not None})
            if args.max_steps:
                raise InputError("--max-steps is for sft; classification trains whole epochs (--epochs).")
            result = train_classifier(data.train, data.validation, cfg, stop_event=stop)
        else:
            from lmdemo.train.sft import SFTConfig, train_sft

            cfg = SFTConfig(base_model=args.base or "smollm2-135m-instruct", max_steps=args.max_steps,
                            **{k: v for k, v in common.items() if v is not None})
            result = train_sft(data.train, data.validation, cfg, stop_event=stop)
    finally:
        signal.signal(signal.SIGINT, previous)
    summary = {"output_dir": result.output_dir, "metrics": result.metrics, "stopped_early": stop.is_set(),
               "train_rows": len(data.train), "validation_rows": len(data.validation)}
    if not args.no_compare and data.validation:
        from lmdemo.eval.compare import compare_base_and_adapter

        # Base vs tuned on the validation split; the eval JSONs saved beside the adapter feed `lmdemo push`.
        comparison = compare_base_and_adapter(task, data.validation, cfg.base_model, result.output_dir, examples=0)
        summary["comparison"] = comparison["metrics"]
    print(json.dumps(summary, indent=2))
    return 0


def cmd_adapters(args: argparse.Namespace) -> int:
    from lmdemo.models import adapters

    if args.adapters_command == "remove":
        adapters.remove(args.name)
        print(f"removed {args.name}")
    elif args.adapters_command == "merge":
        from lmdemo.models.merge import merge

        print(f"merged into {merge(args.name, args.out)}")
    else:
        for a in adapters.list_adapters():
            print(f"{a.name:<28}{a.task:<16}{a.base_model:<24}{json.dumps(a.metrics)}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from lmdemo.models.adapters import push

    # The token is never a flag (it would land in shell history and `ps`): push reads HF_TOKEN or the login.
    result = push(args.adapter, args.repo_id, private=args.private, eval_paths=args.eval,
                  dry_run=args.dry_run, datasets=args.dataset, license=args.license,
                  base_model=args.base_model)
    if result.dry_run:
        print(f"dry run: wrote the upload for {result.repo_id} to {result.folder}: {', '.join(result.files)}")
    else:
        print(f"pushed {', '.join(result.files)} to {result.url or result.repo_id}")
    return 0


def cmd_space(args: argparse.Namespace) -> int:
    from lmdemo.serve.space import build

    files = build(args.out_dir)
    print(f"Space folder {args.out_dir}: {len(files)} files. Upload it with "
          f"`hf upload USER/SPACE {args.out_dir} . --repo-type space` or through the Space's Files tab.")
    return 0


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="built-in name, local folder or Hub id")
    p.add_argument("--adapter", help="PEFT adapter folder or name")
    p.add_argument("--json", action="store_true", help="print one JSON object per result")


def _text_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", nargs="?", help="the text (or use --file)")
    p.add_argument("--file", help="read the text from a UTF-8 file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lmdemo", description="Run and compare small language models.")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list built-in models with their status; `models prepare` fetches them")
    models.add_argument("--json", action="store_true", help="print the list as JSON")
    models.set_defaults(func=cmd_models)
    models_sub = models.add_subparsers(dest="models_command")
    prepare = models_sub.add_parser("prepare", help="fetch and convert built-in models (all when none named)")
    prepare.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(BUILTINS)}")
    prepare.set_defaults(func=cmd_prepare)

    gen = sub.add_parser("generate", help="chat with an instruct model or complete text with a base model")
    gen.add_argument("prompt", nargs="+")
    gen.add_argument("--mode", choices=["chat", "completion"], default="chat")
    gen.add_argument("--max-new-tokens", type=int, default=128)
    gen.add_argument("--temperature", type=float, default=0.7, help="0 = greedy")
    gen.add_argument("--top-p", type=float, default=0.9)
    gen.add_argument("--top-k", type=int, default=50)
    gen.add_argument("--repetition-penalty", type=float, default=1.1)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--quantize", choices=["none", "8bit", "4bit"])
    _model_args(gen)
    gen.set_defaults(func=cmd_generate)

    sen = sub.add_parser("sentiment", help="positive/negative with a confidence for each text")
    sen.add_argument("text", nargs="*")
    sen.add_argument("--file", help=".txt (one text a line) or .csv with a `text` column")
    _model_args(sen)
    sen.set_defaults(func=cmd_sentiment)

    summ = sub.add_parser("summarize", help="summarise a text")
    _text_args(summ)
    summ.add_argument("--max-words", type=int, help="summary length in words")
    summ.add_argument("--sentences", type=int, default=2, help="summary length in sentences (default 2)")
    _model_args(summ)
    summ.set_defaults(func=cmd_summarize)

    tr = sub.add_parser("translate", help="translate between en, fr, de, es, zh")
    _text_args(tr)
    tr.add_argument("--source", default="en")
    tr.add_argument("--target", default="fr")
    _model_args(tr)
    tr.set_defaults(func=cmd_translate)

    ppl = sub.add_parser("perplexity", help="per-token log-probabilities and perplexity of a text")
    _text_args(ppl)
    _model_args(ppl)
    ppl.set_defaults(func=cmd_perplexity)

    ev = sub.add_parser("eval", help="score a model or adapter on an eval set with lmdemo's offline metrics")
    ev.add_argument("task", choices=["sentiment", "classification", "translation", "summarisation", "summarization",
                                     "generation"])
    ev.add_argument("--data", help="JSONL or CSV file (default: the bundled set for the task)")
    ev.add_argument("--limit", type=int, help="use the first N examples")
    ev.add_argument("--columns", nargs="*", metavar="OLD=NEW", help="rename file columns to the task's fields")
    ev.add_argument("--predictions", metavar="OUT.jsonl", help="write each example with its prediction")
    ev.add_argument("--save", metavar="RESULTS.json", help="write the result summary as JSON")
    _model_args(ev)
    ev.set_defaults(func=cmd_eval)

    ft = sub.add_parser("finetune", help="LoRA fine-tuning: classification (alias sentiment) or sft")
    ft.add_argument("task", choices=["classification", "sentiment", "sft"])
    ft.add_argument("--data", required=True, help="CSV, JSONL or Parquet file, or a Hub dataset id (online)")
    ft.add_argument("--eval-data", help="validation file (default: 10 %% of --data held back)")
    ft.add_argument("--output", required=True, help="adapter name (saved in the adapters folder) or a folder path")
    ft.add_argument("--base", help="base model (default: all-minilm-l6-v2 for classification, smollm2 for sft)")
    ft.add_argument("--epochs", type=float)
    ft.add_argument("--max-steps", type=int)
    ft.add_argument("--lr", type=float)
    ft.add_argument("--lora-r", type=int)
    ft.add_argument("--quantize", choices=["4bit"], help="QLoRA: base loaded in 4-bit")
    ft.add_argument("--seed", type=int)
    ft.add_argument("--no-compare", action="store_true",
                    help="skip scoring base and fine-tuned models on the validation split afterwards")
    for name in ("text", "label", "prompt", "response"):
        ft.add_argument(f"--{name}-column", help=f"file column holding the {name}")
    ft.set_defaults(func=cmd_finetune)

    ad = sub.add_parser("adapters", help="list, remove or merge fine-tuned adapters")
    ad.set_defaults(func=cmd_adapters)
    ad_sub = ad.add_subparsers(dest="adapters_command")
    rm = ad_sub.add_parser("remove")
    rm.add_argument("name")
    mg = ad_sub.add_parser("merge", help="merge an adapter into its base and save a full model folder")
    mg.add_argument("name")
    mg.add_argument("out")

    pu = sub.add_parser("push", help="upload an adapter with a model card (base model, eval results) to the Hub")
    pu.add_argument("adapter", metavar="ADAPTER_DIR", help="adapter folder or name in the adapters folder")
    pu.add_argument("--repo-id", required=True, metavar="USER/NAME")
    pu.add_argument("--private", action="store_true")
    pu.add_argument("--eval", action="append", metavar="RESULTS.json",
                    help="`lmdemo eval --save` output to put in the card (repeat for adapter and base); "
                         "default: the comparison saved beside the adapter by fine-tuning")
    pu.add_argument("--dataset", action="append", help="Hub id of a training dataset for the card")
    pu.add_argument("--license", help="licence id for the card (default: the base model's)")
    pu.add_argument("--base-model", metavar="USER/NAME", help="the base's Hub id (default: from the adapter)")
    pu.add_argument("--dry-run", metavar="OUT_DIR", help="write the folder that would be uploaded, upload nothing")
    pu.set_defaults(func=cmd_push)

    sp = sub.add_parser("space", help="Hugging Face Space deployment")
    sp_sub = sp.add_subparsers(dest="space_command", required=True)
    spb = sp_sub.add_parser("build", help="assemble a self-contained Space folder from the current code")
    spb.add_argument("out_dir", metavar="OUT_DIR")
    spb.set_defaults(func=cmd_space)

    serve = sub.add_parser("serve", help="start the web app")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--host", default="127.0.0.1")
    serve.set_defaults(func=cmd_serve)

    ts = sub.add_parser("train-sentiment", help="reproduce the bundled sentiment adapter (LoRA on MiniLM)")
    ts.add_argument("--out", help="output folder (default: the bundled adapter's place)")
    ts.add_argument("--epochs", type=float)
    ts.add_argument("--seed", type=int)
    ts.set_defaults(func=cmd_train_sentiment)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    if getattr(args, "text", None) is not None and getattr(args, "file", None) and args.command != "sentiment":
        parser.error("give the text or --file, not both")
    try:
        return func(args)
    except (LmdemoError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
