import pytest

from clinreason.domain.rubric import DEFAULT_RUBRIC_DICT, RubricError, default_rubric, rubric_from_dict


def test_default_rubric_matches_design():
    r = default_rubric()
    assert r.names == ["correctness", "reasoning", "sufficiency", "terminology", "clinical_value"]
    assert (r.scale_min, r.scale_max) == (1, 5)
    assert r.dimension("correctness").threshold == 5
    assert all(r.dimension(n).threshold == 4 for n in r.names[1:])
    assert all(set(d.anchors) == {1, 2, 3, 4, 5} for d in r.dimensions)


def test_scores_are_validated_naming_the_dimension():
    r = default_rubric()
    good = {n: 5 for n in r.names}
    assert r.validate_scores(good) == good
    with pytest.raises(RubricError, match="scores.reasoning: missing"):
        r.validate_scores({k: v for k, v in good.items() if k != "reasoning"})
    with pytest.raises(RubricError, match="scores.correctness: 6 is outside"):
        r.validate_scores({**good, "correctness": 6})
    with pytest.raises(RubricError, match="scores.style: not a rubric dimension"):
        r.validate_scores({**good, "style": 3})
    with pytest.raises(RubricError, match="expected an integer"):
        r.validate_scores({**good, "terminology": "4"})
    with pytest.raises(RubricError, match="expected an integer"):
        r.validate_scores({**good, "terminology": True})


def test_failing_dimensions_use_thresholds():
    r = default_rubric()
    scores = {"correctness": 4, "reasoning": 4, "sufficiency": 3, "terminology": 5, "clinical_value": 4}
    assert r.failing_dimensions(scores) == ["correctness", "sufficiency"]


def test_round_trip_and_config_errors():
    r = default_rubric()
    assert rubric_from_dict(r.to_dict()) == r
    with pytest.raises(RubricError, match=r"rubric.dimensions\[1\].name: duplicate"):
        rubric_from_dict({"dimensions": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(RubricError, match=r"rubric.dimensions\[0\].threshold"):
        rubric_from_dict({"dimensions": [{"name": "a", "threshold": 9}]})
    with pytest.raises(RubricError, match="rubric.scale"):
        rubric_from_dict({**DEFAULT_RUBRIC_DICT, "scale": [5, 1]})
