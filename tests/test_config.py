"""One table of defaults: the settings models. The TOML a new project gets is written from them, and the
consensus rules' Policy is built from them."""

from __future__ import annotations

import tomllib

from clinreason.config import DEFAULT_CONFIG_TOML, ProjectConfig, ReviewConfig, config_changes
from clinreason.domain.consensus import Policy


def test_the_template_says_what_the_models_default_to():
    written = ProjectConfig.model_validate(tomllib.loads(DEFAULT_CONFIG_TOML))
    assert written.model_dump(exclude={"licenses"}) == ProjectConfig().model_dump(exclude={"licenses"})
    assert written.licenses["medqa"] == "MIT"


def test_a_changed_default_reaches_the_template():
    assert "overlap = 2 " in DEFAULT_CONFIG_TOML
    assert ReviewConfig(overlap=3).policy().overlap == 3


def test_the_rules_take_every_setting_from_the_config():
    made = ReviewConfig(allocation="adaptive", accept_risk=0.01, max_reviewers=4).policy()
    assert isinstance(made, Policy) and made.accept_risk == 0.01 and made.max_reviewers == 4
    assert made.base_overlap == 1 and ReviewConfig(overlap=3).policy().base_overlap == 3


def test_init_reports_changed_keys_by_their_dotted_name():
    before = ProjectConfig().model_dump(mode="json", exclude={"rubric"})
    after = ProjectConfig.model_validate({"review": {"overlap": 3}}).model_dump(mode="json", exclude={"rubric"})
    assert config_changes(before, after) == ["review.overlap: 2 -> 3"]
