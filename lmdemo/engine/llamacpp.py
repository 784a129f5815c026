"""Opt-in llama.cpp decoding of a built-in model's own GGUF file (LMDEMO_FASTGEN_WEIGHTS=gguf).

The built-in chat and completion models ship as 4-bit GGUF files (SmolLM2 Q4_1, Gemma 3 Q4_K_M) that the
store dequantises to bf16 for transformers. llama.cpp runs the file itself with its 4-bit kernels, which read a
quarter of the bytes per step: several times faster on a CPU, on any x86 (AVX2 or AVX-512). Its arithmetic
differs (activations rounded to 8 bits inside the dot products), so the text can differ from transformers';
bench/README.md has the speed and the quality measured with `lmdemo eval`; docs/llamacpp.md how it works.

Only the logits come from llama.cpp: the tokenizer, chat template, stop handling and the choice of the next
token (greedy or seeded sampling through transformers' logits processors) stay lmdemo's, through
`fastgen.generate_tokens`. Needs the extra in requirements-llama.txt (llama-cpp-python, compiled on install).
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from lmdemo.config import require_llama_cpp as require
from lmdemo.errors import ConfigError

CONTEXT = 4096  # tokens per generation (prompt + new); longer requests stay on transformers
_OPEN: "weakref.WeakSet[GGUFDecoder]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Freed before the interpreter tears down the bindings, which otherwise fails noisily at exit.
    for dec in list(_OPEN):
        dec.llm.close()


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


class GGUFDecoder:
    """`fastgen.Decoder`'s interface (new_cache, forward) over a llama.cpp context on one GGUF file."""

    def __init__(self, path: os.PathLike | str, vocab_size: int, threads: int | None = None,
                 context: int = CONTEXT):
        require()
        from llama_cpp import Llama

        threads = threads or torch.get_num_threads()
        self.path = str(path)
        self.llm = Llama(model_path=self.path, n_ctx=context, n_batch=512, n_ubatch=512, n_threads=threads,
                         n_threads_batch=threads, logits_all=False, verbose=False)
        if self.llm.n_vocab() != vocab_size:
            raise ConfigError(f"{self.path} has {self.llm.n_vocab()} tokens, the loaded model {vocab_size}")
        self.context = self.llm.n_ctx()
        self.vocab = vocab_size
        self.extra_bytes = os.path.getsize(self.path)  # mapped weights; the KV cache is small beside them
        self._lock = threading.Lock()
        _OPEN.add(self)

    @contextmanager
    def session(self) -> Iterator[None]:
        """One generation at a time: the context holds a single sequence's KV cache."""
        with self._lock:
            yield

    def new_cache(self, length: int) -> None:
        if length > self.context:
            raise ValueError(f"llama.cpp context holds {self.context} tokens; this generation needs {length}")
        self.llm.reset()
        return None

    def forward(self, ids: torch.Tensor, pos: int, cache) -> torch.Tensor:
        """Feed tokens ``ids`` (1 x t) at positions pos.. and return the last position's logits (1 x vocab)."""
        if pos != self.llm.n_tokens:
            raise RuntimeError(f"llama.cpp context is at {self.llm.n_tokens} tokens, asked for position {pos}")
        self.llm.eval(ids[0].tolist())
        from llama_cpp import llama_get_logits_ith

        logits = np.ctypeslib.as_array(llama_get_logits_ith(self.llm.ctx, -1), shape=(self.vocab,))
        return torch.from_numpy(logits.copy())[None]
