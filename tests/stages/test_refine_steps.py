"""Guided regeneration targets the marks: the prompt lists each marked step (number, text, category with
its description, severity, note, correction) in English and Chinese, reviewers anonymised, and tells the
model to keep the unmarked steps."""

from __future__ import annotations

import re

import pytest

from clinreason.domain.consensus import Feedback
from clinreason.domain.records import Item
from clinreason.domain.rubric import default_rubric
from clinreason.domain.steps import Severity, StepMark, StepVerdict
from clinreason.stages.refine import build_regeneration_messages, render_marked_steps

R = default_rubric()
STEPS = ["Identify the findings.", "Beta-blockers first for the tachycardia.", "Answer A."]
MARK = StepMark(2, StepVerdict.ERROR, "unsafe", Severity.CRITICAL, "contraindicated in cocaine toxicity",
                "Give benzodiazepines first.")
FEEDBACK = Feedback(failing={}, comments=[("ana", "general", "see step 2")], verdicts={"accept": 2},
                    step_marks=[("ana", MARK), ("ben", StepMark(2, StepVerdict.ERROR, "factual_error", Severity.MAJOR,
                                                                "wrong drug class"))])


def item(language: str) -> Item:
    return Item(id="i1", project_id=1, question="A man after cocaine use has chest pain. Next step?",
                options=[("A", "benzodiazepine"), ("B", "propranolol")], answer_labels=["A"], language=language,
                state="regenerating")


def test_marked_steps_are_rendered_with_everything_reviewers_said():
    rendered = render_marked_steps(R, FEEDBACK, STEPS, language="en")
    assert [s["number"] for s in rendered] == [2] and rendered[0]["text"] == STEPS[1]
    assert [m["reviewer"] for m in rendered[0]["marks"]] == ["Reviewer 1", "Reviewer 2"]
    assert rendered[0]["marks"][0]["correction"] == "Give benzodiazepines first."
    assert render_marked_steps(R, None, STEPS, language="en") == []


@pytest.mark.parametrize("language, words", [
    ("en", ["Step 2: Beta-blockers first for the tachycardia.", "unsafe (Following this step could harm",
            "severity critical: contraindicated in cocaine toxicity", "Suggested correction: Give benzodiazepines",
            "Keep every unmarked step as it is"]),
    ("zh", ["第 2 步：Beta-blockers first for the tachycardia.", "unsafe（按此步骤处理可能伤害患者",
            "严重程度 critical：contraindicated in cocaine toxicity", "建议改为：Give benzodiazepines",
            "未被标记的步骤保持原样"]),
])
def test_the_regeneration_prompt_lists_the_marked_steps(language, words):
    feedback = {"previous": {"version": 1, "text": "\n".join(STEPS), "id": "r1"}, "failed_dimensions": [],
                "comments": [], "failed_checks": [], "scale_max": 5,
                "marked_steps": render_marked_steps(R, FEEDBACK, STEPS, language=language)}
    messages, _ = build_regeneration_messages(item(language), feedback, mode="explain")
    prompt = messages[-1]["content"]
    for w in words:
        assert w in prompt, (w, prompt)
    assert not re.search(r"\b(ana|ben)\b", prompt)  # reviewers anonymised to the model
    unmarked = {**feedback, "marked_steps": []}
    assert "Step 2:" not in build_regeneration_messages(item("en"), unmarked, mode="explain")[0][-1]["content"]
