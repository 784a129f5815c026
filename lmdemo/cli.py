"""`python -m lmdemo`: command-line entry point. Library errors become one-line messages and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

from . import store
from .config import ConfigError
from .errors import LmdemoError
from .registry import BUILTINS


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (LmdemoError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
