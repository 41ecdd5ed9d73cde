"""The generate stage: drafting a rationale for an item.

Two pure functions, as every LLM stage has: `build_draft_messages(item, ...)` and
`parse_completion(raw, item)`. The I/O (claiming, calling the model, storing) is the generic runner's.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from clinreason.domain.rationale_text import ParsedRationale, ParseError, parse_rationale
from clinreason.domain.records import Item
from clinreason.llm.base import ChatMessage, Completion, LLMParams
from clinreason.prompts import render


def prompt_view(item: Item) -> dict[str, Any]:
    """What templates see of an item."""
    return {"question": item.question, "options": [tuple(o) for o in item.options], "gold": item.gold,
            "context": item.context}


def build_draft_messages(item: Item, *, mode: str, use_reference: bool) -> tuple[list[ChatMessage], str]:
    reference = item.reference_explanation if use_reference else None
    return render("draft", item.language, item=prompt_view(item), mode=mode, reference=reference)


def request_hash(model_id: str, messages: list[ChatMessage], params: LLMParams) -> str:
    """Identical requests (same model, messages and answer-changing parameters) hash the same."""
    blob = json.dumps({"model": model_id, "messages": messages, "params": params.cache_fields()},
                      ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def parse_completion(completion: Completion, item: Item) -> dict[str, Any]:
    """What a completion yields for its rationale version: the parse (steps, final answer, text,
    parse_status, parse_error) and the provenance the completion carries. A parse failure is stored
    as a status with its reason; the raw output is always kept."""
    result = parse_rationale(completion.text, dict(item.options))
    ok = isinstance(result, ParsedRationale)
    return {
        "steps": result.steps,
        "final_answer": result.final_answer,
        "text": result.text or completion.text or "",
        "parse_status": "ok" if ok else "failed",
        "parse_error": result.reason if isinstance(result, ParseError) else None,
        "raw_output": completion.text,
        "reasoning": completion.reasoning,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "cost": completion.cost,
        "latency_ms": completion.latency_ms,
        "model": completion.model,
    }
