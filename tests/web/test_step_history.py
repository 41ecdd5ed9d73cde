"""stages.history.step_history, pure over records: what the item page, the API and `clinreason history` show of
each version's steps (changes since its parent, the marks it received)."""

from __future__ import annotations

import itertools

from clinreason.domain.records import RationaleVersion, Review
from clinreason.stages.history import compare_steps, step_history


def _version(number, steps, parent=None):
    return RationaleVersion(id=f"r{number}", item_id="i1", version=number, origin="generated" if number == 1 else "edited",
                            author="model:m", steps=steps, final_answer=["A"], text="\n".join(steps),
                            parent_version=parent)


_ids = itertools.count(1)


def _review(rid, reviewer, marks):
    n = next(_ids)
    return Review(id=f"rev{n}", rationale_id=rid, item_id="i1", reviewer_id=n, verdict="regenerate",
                  scores={}, steps=marks, reviewer=reviewer)


V1 = ["Step 1: chest pain suggests ACS.", "Step 2: aspirin 75 mg first.", "Step 3: heparin is irrelevant.",
      "Final answer: A"]
V2 = ["Step 1: chest pain suggests ACS.", "Step 2: aspirin 300 mg chewed first.", "Step 3: nitrates relieve pain.",
      "Final answer: A"]


def test_each_version_lists_its_changes_since_its_parent_and_the_marks_it_received():
    error = {"step": 2, "verdict": "error", "category": "factual_error", "severity": "major", "note": "dose",
             "correction": "300 mg chewed"}
    reviews = [_review("r1", "alice", [error, {"step": 1, "verdict": "ok"}]),
               _review("r1", "bob", [{"step": 2, "verdict": "error", "category": "unsafe", "severity": "critical",
                                      "note": "too low"}]),
               _review("r2", "carol", [])]
    got = step_history([_version(1, V1), _version(2, V2, parent=1)], reviews)

    assert [g["version"] for g in got] == [1, 2]
    first, second = got
    assert first["changes"] is None and first["parent_version"] is None and first["step_changes"] == []
    assert [(m["step"], m["reviewer"]) for m in first["marks"]] == [(1, "alice"), (2, "alice"), (2, "bob")]
    assert first["marks"][1] == {"step": 2, "review_id": reviews[0].id, "reviewer": "alice", "verdict": "error",
                                 "category": "factual_error", "severity": "major", "note": "dose",
                                 "correction": "300 mg chewed"}
    assert [m["reviewer"] for m in first["steps"][1]["marks"]] == ["alice", "bob"]
    assert first["steps"][0]["change"] is None

    assert second["parent_version"] == 1
    assert second["changes"] == {"changed": [2, 3], "added": [], "removed": []}
    assert [s["change"] for s in second["steps"]] == ["unchanged", "changed", "changed", "unchanged"]
    assert second["steps"][1]["text"] == V2[1] and second["steps"][1]["was"] == 2
    assert second["marks"] == [], "marks belong to the version they were given on"


def test_an_inserted_step_does_not_count_the_renumbered_ones_as_rewritten():
    old = ["Step 1: ACS.", "Step 2: aspirin first.", "Step 3: beta blockers later.", "Final answer: A"]
    new = ["Step 1: ACS.", "Step 2: aspirin first.", "Step 3: nitrates for pain.", "Step 4: beta blockers later.",
           "Final answer: A"]
    changes = compare_steps(old, new)
    assert [(c.kind, c.old, c.new) for c in changes] == [
        ("unchanged", 1, 1), ("unchanged", 2, 2), ("added", None, 3), ("unchanged", 3, 4), ("unchanged", 4, 5)]
    assert changes[3].old_text == "Step 3: beta blockers later." and changes[3].new_text == "Step 4: beta blockers later."


def test_removed_steps_are_named_in_the_parent_with_their_text():
    got = step_history([_version(1, ["A.", "B.", "C."]), _version(2, ["A.", "C."], parent=1)], [])
    assert got[1]["changes"] == {"changed": [], "added": [], "removed": [2]}
    assert got[1]["removed"] == [{"step": 2, "text": "B."}]


def test_only_the_reviews_given_are_read_so_blindness_stays_with_the_caller():
    got = step_history([_version(1, V1)], [])
    assert got[0]["marks"] == [] and all(s["marks"] == [] for s in got[0]["steps"])
