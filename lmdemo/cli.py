"""`python -m lmdemo`: command-line entry point. Library errors become one-line messages and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Callable, Sequence

from lmdemo.models import store
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
                     "task": model.task, "family": model.family, "good_for": model.good_for, "licence": model.licence,
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


def _read_file(path: str, max_bytes: int = 10 * 2**20) -> str:
    """A UTF-8 text file, with the upload checks the app applies (size, empty, binary, UTF-8); the app's 10 MB
    limit unless told."""
    from lmdemo.data.files import read_text
    from lmdemo.errors import InputError

    try:
        return read_text(path, max_bytes)
    except OSError as exc:
        raise InputError(f"Cannot read {path}: {exc.strerror}") from None


def _read_input(args: argparse.Namespace, name: str = "text") -> str:
    if getattr(args, "file", None):
        return _read_file(args.file)
    value = getattr(args, name)
    return " ".join(value) if isinstance(value, list) else (value or "")


def _emit(args: argparse.Namespace, obj: dict, plain: str) -> None:
    print(json.dumps(obj, ensure_ascii=False) if args.json else plain, flush=True)


def _fields(args: argparse.Namespace, request_type: type, skip: tuple[str, ...] = ()) -> dict:
    """The request's fields that the parser generated (see _request_args), by name."""
    import dataclasses

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(request_type)
            if f.name not in skip and hasattr(args, f.name)}


def cmd_generate(args: argparse.Namespace) -> int:
    from lmdemo.engine.streaming import GenerationParams
    from lmdemo.jobs.generation import GenerationRequest, generate_stream

    params = GenerationParams(**_fields(args, GenerationParams))
    req = GenerationRequest(" ".join(args.prompt), mode=args.mode, model=args.model, adapter=args.adapter,
                            quantize=args.quantize, params=params)
    shown, result = 0, None
    for result in generate_stream(req):
        if not args.json:
            print(result.text[shown:], end="", flush=True)
            shown = len(result.text)
    if args.json:
        _emit(args, result.to_dict(), "")
    else:
        s = result.stats
        print(f"\n[{s.tokens} tokens, {s.tokens_per_second:.1f} tok/s, {s.finish_reason}, {s.backend}]", file=sys.stderr)
    return 0


def cmd_sentiment(args: argparse.Namespace) -> int:
    from lmdemo.jobs.sentiment import SentimentRequest, read_texts, run

    texts = read_texts(args.file) if args.file else args.text
    for r in run(SentimentRequest(texts, model=args.model, adapter=args.adapter)).results:
        _emit(args, r.to_dict(), f"{r.label}\t{r.score:.3f}\t{r.text}")
    return 0


def cmd_summarize(args: argparse.Namespace) -> int:
    from lmdemo.jobs.summarization import SummaryRequest, summarize

    fields = _fields(args, SummaryRequest, skip=("text",))
    if args.max_words is not None:
        fields.update(unit="words", length=args.max_words)
    elif args.sentences is not None:
        fields.update(unit="sentences", length=args.sentences)
    res = summarize(SummaryRequest(_read_input(args), **fields))
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    _emit(args, res.to_dict(), res.summary)
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from lmdemo.jobs.translation import TranslationRequest, translate

    res = translate(TranslationRequest(_read_input(args), **_fields(args, TranslationRequest, skip=("text",))))
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    _emit(args, res.to_dict(), res.translation)
    return 0


def cmd_perplexity(args: argparse.Namespace) -> int:
    from lmdemo.jobs.lmlab import PerplexityRequest, perplexity

    res = perplexity(PerplexityRequest(_read_input(args), model=args.model, adapter=args.adapter))
    if res.note:
        print(f"note: {res.note}", file=sys.stderr)
    _emit(args, res.to_dict(),
          f"perplexity {res.perplexity:.2f} over {len(res.tokens)} tokens (total log-prob {res.total_logprob:.2f})")
    return 0


def cmd_next_tokens(args: argparse.Namespace) -> int:
    from lmdemo.jobs.lmlab import NextTokensRequest, next_tokens

    res = next_tokens(NextTokensRequest(_read_input(args, "prefix"), k=args.k, model=args.model, adapter=args.adapter))
    _emit(args, res.to_dict(), "\n".join(f"{p:.4f}\t{t!r}" for t, p in res.tokens))
    return 0


def cmd_bigram(args: argparse.Namespace) -> int:
    from lmdemo.data.files import read_text
    from lmdemo.jobs.lmlab import BigramRequest, bigram

    corpus = read_text(args.corpus_file, 10 * 2**20) if args.corpus_file else (args.corpus or "")
    res = bigram(BigramRequest(_read_input(args), corpus, k=args.k, model=args.model, adapter=args.adapter))
    _emit(args, res.to_dict(), f"neural LM ({res.model}): perplexity {res.lm_perplexity:.2f} over {res.lm_tokens} "
                               f"tokens\nbigram, add-{args.k:g}: perplexity {res.bigram_perplexity:.2f} over "
                               f"{res.bigram_tokens} words")
    return 0


def cmd_attention(args: argparse.Namespace) -> int:
    from lmdemo.jobs.lmtheory import AttentionRequest, attention

    res = attention(AttentionRequest(_read_input(args), **_fields(args, AttentionRequest, skip=("text",))))
    sight = ("causal: each token sees only itself and earlier tokens" if res.causal
             else "bidirectional: each token sees every token")
    lines = [f"{res.model} · layer {res.layer} of {res.num_layers} · head {res.head} of {res.num_heads} "
             f"(counted from 0) · {sight}", *res.reading]
    if res.note:
        lines.append(f"note: {res.note}")
    _emit(args, res.to_dict(), "\n".join(lines))
    return 0


def _shown_positions(positions: int) -> list[int]:
    return sorted({p for p in (0, 1, 2, 10, positions - 1) if p < positions})


def cmd_positions(args: argparse.Namespace) -> int:
    import math

    from lmdemo.jobs.lmtheory import RopeRequest, SinusoidalRequest, rope, sinusoidal

    sin = sinusoidal(SinusoidalRequest(**_fields(args, SinusoidalRequest)))
    rot = None if args.no_rope else rope(RopeRequest(model=args.model, positions=args.positions))
    if args.json:
        _emit(args, {"sinusoidal": sin.to_dict(), "rope": rot.to_dict() if rot else None}, "")
        return 0
    shown = _shown_positions(sin.positions)
    lines = ["PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model))",
             f"d_model {sin.d_model}, positions 0-{sin.positions - 1}"]
    if sin.curves:
        lines.append(f"{'dim':>5}  {'':<3}  {'wavelength':>12}" + "".join(f"{f'pos {p}':>10}" for p in shown))
        for dim, curve in sin.curves.items():
            lines.append(f"{dim:>5}  {'sin' if dim % 2 == 0 else 'cos':<3}  {sin.wavelengths[dim]:>12.2f}"
                         + "".join(f"{curve[p]:>10.4f}" for p in shown))
    if rot:
        lines.append("")
        lines.append(f"RoPE of {rot.model}: head_dim {rot.head_dim}, rotary_dim {rot.rotary_dim}; pair i turns by "
                     f"pos * theta^(-2i/{rot.rotary_dim}) radians")
        for t in rot.tables:
            lines.append(f"layers {t.layers}: theta {t.theta:g}, rope_type {t.rope_type}")
            lines.append(f"{'pair':>6}  {'frequency (rad/position)':>26}  {'wavelength (positions)':>24}")
            for pair in t.curves:
                freq = t.frequencies[pair]
                lines.append(f"{pair:>6}  {freq:>26.6g}  {2 * math.pi / freq:>24.2f}")
        lines.append(f"note: {rot.note}")
    _emit(args, {}, "\n".join(lines))
    return 0


def _train_lstm_interruptibly(req, progress: Callable) -> object:
    """lstm_lm.train_lstm in a worker thread; Ctrl-C ends it after the current step (reason "stopped")."""
    import threading
    import time

    from lmdemo.jobs import lstm_lm

    stop, finished = threading.Event(), threading.Event()
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["result"] = lstm_lm.train_lstm(req, on_step=progress, stop=stop)
        except BaseException as exc:  # handed to the main thread, which reports it as usual
            outcome["error"] = exc
        finally:
            finished.set()

    def wait() -> None:
        # Polled with sleep, which Ctrl-C interrupts cleanly (an interrupted Thread.join can mark a live thread
        # as stopped on Python 3.11).
        while not finished.is_set():
            time.sleep(0.05)

    worker = threading.Thread(target=work, name="lmdemo-lstm", daemon=True)
    worker.start()
    try:
        wait()
    except KeyboardInterrupt:
        stop.set()
        print("\nstopping after this step; the LSTM trained so far is scored (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)
        wait()  # a second Ctrl-C here aborts (main: "interrupted", 130)
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def cmd_lstm(args: argparse.Namespace) -> int:
    from lmdemo.jobs import lstm_lm
    from lmdemo.jobs.lmtheory import SideBySideRequest, side_by_side

    corpus = _read_file(args.corpus, 2**20) if args.corpus else lstm_lm.bundled_corpus()
    req = lstm_lm.LstmTrainRequest(corpus, **_fields(args, lstm_lm.LstmTrainRequest, skip=("corpus",)))
    # The text is checked before training, so a bad one costs no training run.
    sbs_req = (SideBySideRequest(_read_input(args), **_fields(args, SideBySideRequest, skip=("text", "lstm_id")))
               if args.text or args.file else None)
    every = max(1, req.steps // 10)

    def progress(step) -> None:
        if step.step % every == 0:
            print(f"step {step.step}/{req.steps}  loss {step.loss:.2f}  perplexity {step.perplexity:.1f}  "
                  f"{step.seconds:.1f} s", file=sys.stderr, flush=True)

    training = _train_lstm_interruptibly(req, progress)
    sbs = side_by_side(sbs_req, lstm=training.model) if sbs_req else None
    gates = sbs.gates if sbs else []
    if args.json:
        _emit(args, {"training": training.to_dict(), "side_by_side": sbs.to_dict() if sbs else None,
                     "gates": [[g.token, g.forget, g.input, g.output] for g in gates]}, "")
        return 0
    lines = [f"LSTM: {training.steps} steps ({training.reason}) in {training.seconds:.1f} s · vocabulary "
             f"{training.vocab_size} · corpus perplexity {training.perplexity_before:.1f} -> "
             f"{training.perplexity_after:.1f}"]
    if training.note:
        lines.append(f"note: {training.note}")
    if sbs is None:
        lines.append("give a text to compare bigram, LSTM and Transformer")
        _emit(args, {}, "\n".join(lines))
        return 0
    strips = (sbs.bigram, sbs.lstm, sbs.transformer)
    width = max(len("name"), *(len(s.name) for s in strips)) + 2
    lines.append(f"{'name':<{width}}{'unit':<7}{'perplexity':>12}")
    lines += [f"{s.name:<{width}}{s.unit:<7}{s.perplexity:>12.2f}" for s in strips]
    lines.append("")
    lines.append("LSTM gates per word (mean over the hidden units, right after reading the word):")
    width = max(len("token"), *(len(g.token) for g in gates)) + 2
    lines.append(f"{'token':<{width}}{'forget':>8}{'input':>8}{'output':>8}")
    lines += [f"{g.token:<{width}}{g.forget:>8.2f}{g.input:>8.2f}{g.output:>8.2f}" for g in gates]
    if sbs.note:
        lines.append(f"note: {sbs.note}")
    _emit(args, {}, "\n".join(lines))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    if args.api_only:
        from lmdemo.serve.openai_api import serve

        serve(host=args.host, port=args.port)
        return 0
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
    from lmdemo.data.tabular import parse_columns
    from lmdemo.eval import evaluation

    models = list(args.models or []) + ([args.model] if args.model else [])
    if args.adapter:
        models.append(args.adapter)
    req = evaluation.EvalRequest(args.task, args.data, models=models, limit=args.limit,
                                 columns=parse_columns(args.columns), source=args.source, target=args.target)
    comparison = evaluation.compare_models(req)
    if args.predictions:
        evaluation.write_predictions(comparison.results[0][1], args.predictions)
    if args.save:
        evaluation.save(comparison.results[0][1], args.save)
    if args.json:
        summaries = [r.summary() for _, r in comparison.results]
        print(json.dumps(summaries[0] if len(summaries) == 1 else comparison.to_dict(), ensure_ascii=False))
        return 0
    for label, result in comparison.results:
        print(f"{result.task} · {label} ({result.model}{' + ' + result.adapter if result.adapter else ''}) · "
              f"{result.n} examples · {result.seconds:.1f} s")
        for name, value in result.metrics.items():
            print(f"  {name:<10} {value:.4f}")
    from lmdemo.models.adapters import compared_sentence

    if sentence := compared_sentence(comparison.paired()):
        print(sentence)
    return 0


def _finetune_request(args: argparse.Namespace):
    from lmdemo.train.plan import FinetuneRequest

    columns = {}
    for field_ in ("text", "label", "prompt", "response", "source", "target"):
        column = getattr(args, f"{field_}_column")
        if column:
            columns[column] = field_
    return FinetuneRequest(task=args.task, data=args.data, sample=args.sample, eval_data=args.eval_data,
                           output=args.output or "", base=args.base, epochs=args.epochs, max_steps=args.max_steps,
                           learning_rate=args.lr, lora_r=args.lora_r, quantize=args.quantize, seed=args.seed,
                           columns=columns, source=args.source, target=args.target)


def cmd_estimate(args: argparse.Namespace) -> int:
    from lmdemo.train.plan import estimate_plan, plan

    est = estimate_plan(plan(_finetune_request(args)))
    _emit(args, est.to_dict(), est.text())
    return 0


def _finetune_argv(args: argparse.Namespace) -> list[str]:
    """`finetune` arguments that give `args` back, less --processes: what each torchrun process runs."""
    positional, flags = [], []
    for action in args.parser._actions:  # the finetune parser's own flags, so a new flag is passed on too
        value = getattr(args, action.dest, None)
        if action.dest in ("processes", "help") or value is None or (action.option_strings and value == action.default):
            continue
        if not action.option_strings:
            positional.append(str(value))
        elif action.nargs == 0:  # a switch such as --no-compare
            flags.append(action.option_strings[-1])
        else:  # --flag=value, so a value starting with "-" stays a value
            flags.append(f"{action.option_strings[-1]}={value}")
    return [args.command, *positional, *flags]


def _launch_finetune(args: argparse.Namespace, processes: int) -> int:
    import shlex
    import signal
    import subprocess

    from lmdemo.train.distributed import launch_command

    command = launch_command(processes, _finetune_argv(args))
    print(f"running: {shlex.join(command)}", file=sys.stderr, flush=True)
    # Ctrl-C reaches torchrun and its workers through the terminal; this process just waits for their exit code.
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        return subprocess.run(command).returncode
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_finetune(args: argparse.Namespace) -> int:
    import signal
    import threading

    from lmdemo.errors import InputError
    from lmdemo.train import distributed
    from lmdemo.train.plan import plan, run_plan

    processes = args.processes
    if processes != 1:
        if distributed.world_size() > 1:
            raise InputError("`--processes` starts torchrun itself; under torchrun or accelerate launch, give the "
                             "process count to the launcher instead.")
        distributed.check_processes(processes)  # before the data is read: a bad count fails at once
    rank0 = distributed.is_main()  # under torchrun/accelerate, rank 0 alone prints, saves and compares
    planned = plan(_finetune_request(args))  # the data checked here, before torchrun starts, too
    for note in planned.data.notes if rank0 else ():
        print(f"note: {note}", file=sys.stderr)
    if args.check:
        if rank0:
            print(json.dumps(planned.summary(), indent=2, ensure_ascii=False))
        return 0
    if processes > 1:
        return _launch_finetune(args, processes)
    stop = threading.Event()

    def on_sigint(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after this step; the adapter trained so far will be saved (Ctrl-C again to abort)",
              file=sys.stderr)

    # Under torchrun, which also forwards Ctrl-C, ranks could stop at different steps: there Ctrl-C just aborts.
    handler = on_sigint if distributed.world_size() == 1 else signal.getsignal(signal.SIGINT)
    previous = signal.signal(signal.SIGINT, handler)
    from lmdemo.train import runlog

    clock = runlog.RunClock()
    try:
        # The Trainer prints its log dicts to stdout; stdout is for the summary JSON alone.
        with contextlib.redirect_stdout(sys.stderr):
            result = run_plan(planned, on_log=clock.on_log, stop_event=stop)
    finally:
        signal.signal(signal.SIGINT, previous)
    if not rank0:
        distributed.finish()  # rank 0 has saved the adapter (training waited for it); it alone reports
        return 0
    data = planned.data
    summary = {"output_dir": result.output_dir, "metrics": result.metrics, "stopped_early": stop.is_set(),
               "train_rows": len(data.train), "validation_rows": len(data.validation)}
    comparison = None
    if not args.no_compare and data.validation:
        from lmdemo.eval.compare import compare_base_and_adapter

        # Base vs tuned on the validation split; the eval JSONs saved beside the adapter feed `lmdemo push`.
        with contextlib.redirect_stdout(sys.stderr):
            comparison = compare_base_and_adapter(planned.task, data.validation, planned.config["base_model"],
                                                  result.output_dir, examples=0)
        summary["comparison"] = comparison["metrics"]
        summary["paired"] = comparison.get("paired")
        from lmdemo.models.adapters import paired_sentence

        if sentence := paired_sentence(summary["paired"]):
            print(sentence, file=sys.stderr)
    record = runlog.record(clock, planned.task, planned.config, None, comparison, stop.is_set())
    runlog.write(result.output_dir, record)
    summary["actual"] = record["actual"]
    print(f"training {runlog.versus(record['actual'], None)}", file=sys.stderr)
    if record["warning"]:
        summary["warning"] = record["warning"]
        print(record["warning"], file=sys.stderr)
    print(json.dumps(summary, indent=2))
    distributed.finish()
    return 0


def cmd_adapters(args: argparse.Namespace) -> int:
    from lmdemo.models import adapters

    if args.adapters_command == "remove":
        adapters.remove(args.name)
        print(f"removed {args.name}")
    elif args.adapters_command == "merge":
        from lmdemo.models.merge import merge

        print(f"merged into {merge(args.name, args.out)}")
    elif args.json:
        print(json.dumps([a.to_dict() for a in adapters.list_adapters()], indent=2))
    else:
        for a in adapters.list_adapters():
            print(f"{a.name:<28}{a.task:<16}{a.base_model:<24}{'(bundled) ' if a.bundled else ''}{json.dumps(a.metrics)}")
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


def _request_args(p: argparse.ArgumentParser, request_type: type, names: tuple[str, ...]) -> None:
    """Flags for a request's fields, with the request's own defaults and help (one source for every face)."""
    import dataclasses

    from lmdemo.jobs.base import defaults

    values = defaults(request_type)
    by_name = {f.name: f for f in dataclasses.fields(request_type)}
    for name in names:
        default = values.get(name)
        kind = type(default) if isinstance(default, (int, float)) and not isinstance(default, bool) else str
        help_ = by_name[name].metadata.get("help", "")
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=default,
                       help=f"{help_} (default: {default})" if help_ else f"default: {default}")


def _field_help(request_type: type, name: str) -> str:
    """A request field's own help text (for a flag _request_args cannot generate)."""
    import dataclasses

    return next(f.metadata.get("help", "") for f in dataclasses.fields(request_type) if f.name == name)


def _model_args(p: argparse.ArgumentParser, json_help: str = "print the result as one JSON object") -> None:
    p.add_argument("--model", help="built-in name, local folder, Hub id, or a fine-tuned adapter's name")
    p.add_argument("--adapter", help="PEFT adapter folder or name (on top of --model)")
    p.add_argument("--json", action="store_true", help=json_help)


def _text_args(p: argparse.ArgumentParser, name: str = "text") -> None:
    p.add_argument(name, nargs="?", help=f"the {name} (or use --file)")
    p.add_argument("--file", help=f"read the {name} from a UTF-8 file")


def _finetune_args(p: argparse.ArgumentParser) -> None:
    from lmdemo.data.tabular import SAMPLES

    p.add_argument("task", choices=["classification", "sentiment", "sft", "translation", "summarisation",
                                    "summarization"],
                   help="translation/summarisation: LoRA on an encoder-decoder model from source/target pairs")
    p.add_argument("--data", help="CSV, JSONL or Parquet file, or a Hub dataset id (online)")
    p.add_argument("--sample", choices=list(SAMPLES), help="a bundled sample set instead of --data")
    p.add_argument("--eval-data", help="validation file (default: 10 %% of --data held back)")
    p.add_argument("--base", help="base model (default: all-minilm-l6-v2 for classification, smollm2 for sft; "
                                  "translation/summarisation need an encoder-decoder model, e.g. Helsinki-NLP/opus-mt-en-fr)")
    p.add_argument("--source", help="translation: source language (default en)")
    p.add_argument("--target", help="translation: target language (default fr)")
    p.add_argument("--epochs", type=float)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--lora-r", type=int)
    p.add_argument("--quantize", choices=["4bit"], help="QLoRA: base loaded in 4-bit")
    p.add_argument("--seed", type=int)
    for name in ("text", "label", "prompt", "response", "source", "target"):
        p.add_argument(f"--{name}-column", help=f"file column holding the {name}")


def build_parser() -> argparse.ArgumentParser:
    from lmdemo.engine.streaming import GenerationParams
    from lmdemo.eval.evaluation import EvalRequest
    from lmdemo.jobs.generation import GenerationRequest
    from lmdemo.jobs.lmlab import BigramRequest, NextTokensRequest
    from lmdemo.jobs.lmtheory import AttentionRequest, RopeRequest, SideBySideRequest, SinusoidalRequest
    from lmdemo.jobs.lstm_lm import BUNDLED_CORPUS, MAX_CORPUS_CHARS, LstmTrainRequest
    from lmdemo.models.registry import DEFAULT_CHAT_MODEL
    from lmdemo.jobs.summarization import SummaryRequest
    from lmdemo.jobs.base import defaults
    from lmdemo.jobs.translation import TranslationRequest

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
    gen.add_argument("--mode", choices=["chat", "completion"], default=GenerationRequest.mode)
    _request_args(gen, GenerationParams, ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty",
                                          "seed"))
    gen.add_argument("--quantize", choices=["none", "8bit", "4bit"])
    _model_args(gen)
    gen.set_defaults(func=cmd_generate)

    sen = sub.add_parser("sentiment", help="positive/negative with a confidence for each text")
    sen.add_argument("text", nargs="*")
    sen.add_argument("--file", help=".txt (one text a line) or .csv with a `text` column")
    _model_args(sen, "print one JSON object per text")
    sen.set_defaults(func=cmd_sentiment)

    summ = sub.add_parser("summarize", help="summarise a text")
    _text_args(summ)
    _request_args(summ, SummaryRequest, ("length", "unit"))
    summ.add_argument("--max-words", type=int, help="shorthand for --unit words --length N")
    summ.add_argument("--sentences", type=int, help="shorthand for --unit sentences --length N")
    _model_args(summ)
    summ.set_defaults(func=cmd_summarize)

    tr = sub.add_parser("translate", help="translate between en, fr, de, es, zh")
    _text_args(tr)
    _request_args(tr, TranslationRequest, ("source", "target"))
    _model_args(tr)
    tr.set_defaults(func=cmd_translate)

    ppl = sub.add_parser("perplexity", help="per-token log-probabilities and perplexity of a text")
    _text_args(ppl)
    _model_args(ppl)
    ppl.set_defaults(func=cmd_perplexity)

    nt = sub.add_parser("next-tokens", help="the most likely next tokens after a prefix, with probabilities")
    _text_args(nt, "prefix")
    _request_args(nt, NextTokensRequest, ("k",))
    _model_args(nt)
    nt.set_defaults(func=cmd_next_tokens)

    bg = sub.add_parser("bigram", help="a text's perplexity under the neural LM and under a bigram model of a corpus")
    _text_args(bg)
    bg.add_argument("--corpus", help="the corpus the bigram model is fitted on")
    bg.add_argument("--corpus-file", help="read the corpus from a UTF-8 file")
    _request_args(bg, BigramRequest, ("k",))
    _model_args(bg)
    bg.set_defaults(func=cmd_bigram)

    att = sub.add_parser("attention", help="one layer and head's attention weights over a short text, in words")
    att.add_argument("text", nargs="*", help="the text (or use --file)")
    att.add_argument("--file", help="read the text from a UTF-8 file")
    _request_args(att, AttentionRequest, ("layer", "head"))
    att.add_argument("--model", help=f"{_field_help(AttentionRequest, 'model')} (default: {DEFAULT_CHAT_MODEL})")
    att.add_argument("--json", action="store_true", help="print the whole map (tokens, weights, reading) as JSON")
    att.set_defaults(func=cmd_attention)

    pos = sub.add_parser("positions", help="sinusoidal position encoding and a model's rotary (RoPE) frequencies")
    _request_args(pos, SinusoidalRequest, ("positions", "d_model"))
    pos.add_argument("--dims", nargs="*", type=int, metavar="DIM", default=defaults(SinusoidalRequest)["dims"],
                     help=f"{_field_help(SinusoidalRequest, 'dims')} (default: "
                          f"{' '.join(map(str, defaults(SinusoidalRequest)['dims']))})")
    pos.add_argument("--model", help=f"{_field_help(RopeRequest, 'model')} (default: {DEFAULT_CHAT_MODEL})")
    pos.add_argument("--no-rope", action="store_true", help="show the sinusoidal encoding only (loads no model)")
    pos.add_argument("--json", action="store_true",
                     help='print {"sinusoidal": ..., "rope": ... or null} as JSON, full tables included')
    pos.set_defaults(func=cmd_positions)

    ls = sub.add_parser("lstm", help="train a word LSTM on a corpus, then score a text under bigram, LSTM and "
                                     "Transformer with the LSTM's gates")
    ls.add_argument("text", nargs="*", help="the text to compare (or use --file); none: train only")
    ls.add_argument("--file", help="read the text from a UTF-8 file")
    ls.add_argument("--corpus", metavar="FILE",
                    help=f"UTF-8 corpus file to train on, one sentence a line, at most {MAX_CORPUS_CHARS:,} "
                         f"characters (default: the bundled {BUNDLED_CORPUS.name})")
    _request_args(ls, LstmTrainRequest, ("steps", "hidden_size", "embed_size", "learning_rate", "max_seconds",
                                         "unk_rate", "seed"))
    _request_args(ls, SideBySideRequest, ("k",))
    ls.add_argument("--model", help=f"the Transformer compared, a {_field_help(SideBySideRequest, 'model')} "
                                    f"(default: {DEFAULT_CHAT_MODEL})")
    ls.add_argument("--adapter", help="PEFT adapter folder or name (on top of --model)")
    ls.add_argument("--json", action="store_true", help='print {"training": ..., "side_by_side": ... or null, '
                                                        '"gates": [...]} as one JSON object (progress stays on stderr)')
    ls.set_defaults(func=cmd_lstm)

    ev = sub.add_parser("eval", help="score one or more models or adapters on an eval set with offline metrics")
    ev.add_argument("task", choices=["sentiment", "classification", "translation", "summarisation", "summarization",
                                     "generation"])
    _request_args(ev, EvalRequest, ("data", "limit"))
    ev.add_argument("--models", nargs="+", metavar="MODEL", help="several models to compare on the same rows")
    ev.add_argument("--columns", nargs="*", metavar="OLD=NEW", help="rename file columns to the task's fields")
    ev.add_argument("--predictions", metavar="OUT.jsonl", help="write each example with its prediction (first model)")
    ev.add_argument("--save", metavar="RESULTS.json", help="write the result summary as JSON (first model)")
    translate = defaults(TranslationRequest)
    for key in ("source", "target"):  # None here: the library applies translate's default (shown) itself
        ev.add_argument(f"--{key}", help=f"translation: {key} language of rows without a `{key}_lang` column; "
                                         f"rows with one keep theirs (default: {translate[key]})")
    _model_args(ev)
    ev.set_defaults(func=cmd_eval)

    ft = sub.add_parser("finetune", help="LoRA fine-tuning: classification (alias sentiment), sft, or "
                                         "translation/summarisation (seq2seq)")
    _finetune_args(ft)
    ft.add_argument("--output", required=True, help="adapter name (saved in the adapters folder) or a folder path")
    ft.add_argument("--check", action="store_true", help="read and check the data, print the plan, train nothing")
    ft.add_argument("--no-compare", action="store_true",
                    help="skip scoring base and fine-tuned models on the validation split afterwards")
    ft.add_argument("--processes", type=int, default=1, metavar="N",
                    help="train in N processes (one per GPU, or CPU processes) through torchrun, data split "
                         "between them; see docs/training.md (default: 1)")
    ft.set_defaults(func=cmd_finetune, parser=ft)

    es = sub.add_parser("estimate", help="time and memory of a fine-tuning run, from two real optimiser steps")
    _finetune_args(es)
    es.add_argument("--output", default="", help=argparse.SUPPRESS)
    es.add_argument("--json", action="store_true", help="print the estimate as JSON")
    es.set_defaults(func=cmd_estimate)

    ad = sub.add_parser("adapters", help="list, remove or merge fine-tuned adapters")
    ad.add_argument("--json", action="store_true", help="print the list as JSON")
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

    serve = sub.add_parser("serve", help="start the web app (with the OpenAI-compatible API on /v1)")
    serve.add_argument("--api-only", action="store_true",
                       help="serve only the OpenAI-compatible API (/v1/models, /v1/chat/completions, /v1/completions)")
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
    for name in ("text", "prefix"):
        # `[]`: no words for a TEXT ... positional
        if getattr(args, name, None) not in (None, []) and getattr(args, "file", None) and args.command != "sentiment":
            parser.error(f"give the {name} or --file, not both")
    try:
        return func(args)
    except LmdemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
