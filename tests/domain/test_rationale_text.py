import pytest

from clinreason.domain.rationale_text import ParsedRationale, ParseError, answer_labels, parse_rationale

OPTS = {"A": "aspirin", "B": "heparin", "C": "warfarin", "D": "alteplase"}


@pytest.mark.parametrize("raw,steps,answer", [
    ("1. Chest pain and ST elevation suggest STEMI.\n2. A is antiplatelet only.\nFinal answer: D", 2, ["D"]),
    ("Step 1: x findings\nStep 2: y\n**Final Answer:** (B) heparin", 2, ["B"]),
    ("1) first\n2) second\nFinal answer: A and C", 2, ["A", "C"]),
    ("1. 胸痛伴ST段抬高提示心梗\n2. 排除A\n最终答案：D", 2, ["D"]),
    ("第一步：分析题干\n第二步：排除错误选项\n答案：B", 2, ["B"]),
    ("The findings point to a clot.\n\nThrombolysis is indicated.\n\nFinal answer: alteplase", 2, ["D"]),
    ('{"steps": ["Fever", "Rash"], "final_answer": "C"}', 2, ["C"]),
    ('```json\n{"steps": ["a b", "c d"], "final_answer": ["A", "B"]}\n```', 2, ["A", "B"]),
])
def test_parses_real_world_shapes(raw, steps, answer):
    result = parse_rationale(raw, OPTS)
    assert isinstance(result, ParsedRationale), result
    assert len(result.steps) == steps and result.final_answer == answer


@pytest.mark.parametrize("raw,reason", [
    ("", "empty output"),
    ("1. It is clearly heparin.", "no final answer line"),
    ("1. reasoning\nFinal answer: E", "names no option"),
    ("Final answer: A", "no reasoning steps"),
    ('{"steps": [], "final_answer": "A"}', "no steps"),
])
def test_failures_are_values_with_a_reason(raw, reason):
    result = parse_rationale(raw, OPTS)
    assert isinstance(result, ParseError) and not result
    assert reason in result.reason


def test_answer_labels_forms():
    assert answer_labels("B", OPTS) == ["B"]
    assert answer_labels("A, C", OPTS) == ["A", "C"]
    assert answer_labels("AC", OPTS) == ["A", "C"]
    assert answer_labels("(D) alteplase", OPTS) == ["D"]
    assert answer_labels("Warfarin.", OPTS) == ["C"]
    assert answer_labels("none of these", OPTS) == []
    assert answer_labels("A、B", {"A": "甲", "B": "乙"}) == ["A", "B"]


def test_open_questions_need_no_labels():
    result = parse_rationale("1. Anaphylaxis needs adrenaline.\n2. IM route.\nFinal answer: adrenaline", {})
    assert isinstance(result, ParsedRationale) and result.final_answer == []
