"""Three faces, one source: the CLI, the gradio API and the page start every job from the request's defaults."""

import pytest

from lmdemo.cli import build_parser
from lmdemo.engine.streaming import GenerationParams
from lmdemo.eval.evaluation import EvalRequest
from lmdemo.jobs.base import defaults
from lmdemo.jobs.generation import GenerationRequest
from lmdemo.jobs.lmlab import BigramRequest, NextTokensRequest
from lmdemo.jobs.summarization import SummaryRequest
from lmdemo.jobs.translation import TranslationRequest
from lmdemo.train.plan import FinetuneRequest, task_defaults

# job -> (the library's defaults, the fields every face shows, CLI argv with required inputs only, API endpoint)
JOBS = {
    "generate": ({**defaults(GenerationParams), "mode": defaults(GenerationRequest)["mode"]},
                 ("mode", "max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed"),
                 ["generate", "hi"], "/generate"),
    "summarize": (defaults(SummaryRequest), ("length", "unit"), ["summarize", "text"], "/summarize"),
    "translate": (defaults(TranslationRequest), ("source", "target"), ["translate", "text"], "/translate"),
    "next_tokens": (defaults(NextTokensRequest), ("k",), ["next-tokens", "The"], "/next_tokens"),
    "bigram": (defaults(BigramRequest), ("k",), ["bigram", "the cat"], "/bigram"),
    "evaluate": (defaults(EvalRequest), ("task", "limit"), ["eval", "sentiment"], "/evaluate"),
}


@pytest.mark.parametrize("job", JOBS)
def test_cli_defaults_are_the_requests(job):
    expected, names, argv, _ = JOBS[job]
    if job == "evaluate":  # the task is a required positional on the CLI; its default shows on the page and API
        names = ("limit",)
    args = vars(build_parser().parse_args(argv))
    assert {n: args[n] for n in names} == {n: expected[n] for n in names}


def test_the_requests_defaults_differ_from_a_broken_face():
    """The comparison can fail: a parser with another default is caught."""
    parser = build_parser()
    gen = next(a for a in parser._subparsers._group_actions[0].choices["generate"]._actions
               if a.dest == "max_new_tokens")
    gen.default = 999
    assert vars(parser.parse_args(["generate", "hi"]))["max_new_tokens"] != defaults(GenerationParams)["max_new_tokens"]


@pytest.mark.parametrize("job", JOBS)
def test_api_defaults_are_the_requests(client, job):
    expected, names, _, endpoint = JOBS[job]
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    params = {p["parameter_name"]: p["parameter_default"] for p in named[endpoint]["parameters"]
              if p["parameter_has_default"]}
    assert {n: params[n] for n in names} == {n: expected[n] for n in names}


def _ui_values(app) -> dict[str, object]:
    return {block.elem_id: getattr(block, "value", None) for block in app.blocks.values()
            if getattr(block, "elem_id", None)}


@pytest.mark.parametrize("job", JOBS)
def test_page_defaults_are_the_requests(app, job):
    expected, names, _, _ = JOBS[job]
    values = _ui_values(app)
    assert {n: values[f"{job}-{n}"] for n in names} == {n: expected[n] for n in names}


def test_finetune_and_eval_models_defaults(app):
    values = _ui_values(app)
    task = defaults(FinetuneRequest)["task"]
    expected = {"task": task, **task_defaults(task)}
    assert {k: values[f"finetune-{k}"] for k in expected} == expected
    assert values["evaluate-models"] == ", ".join(defaults(EvalRequest)["models"])
