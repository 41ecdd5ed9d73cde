"""`[privacy]` in clinreason.toml: defaults, the template init writes, and errors that name the key."""

from __future__ import annotations

import tomllib

import pytest

from clinreason.config import DEFAULT_CONFIG_TOML, ConfigError, PrivacyConfig, ProjectConfig, load_project_config
from clinreason.stages import privacy


def test_defaults_scan_remote_requests_and_block():
    p = ProjectConfig().privacy
    assert (p.scope, p.gate, p.min_score, p.ner_model, p.ignore) == ("remote", "block", 0.5, None, [])
    written = tomllib.loads(DEFAULT_CONFIG_TOML)
    assert written["privacy"] == {"scope": "remote", "gate": "block", "min_score": 0.5, "ignore": []}
    assert written["web"] == {"trusted_proxies": []}
    assert "# ner_model =" in DEFAULT_CONFIG_TOML


def test_bad_values_name_the_key(tmp_path):
    path = tmp_path / "clinreason.toml"
    for body, expected in (('[privacy]\ngate = "warn"\n', "privacy.gate"),
                           ('[privacy]\nscope = "lan"\n', "privacy.scope"),
                           ('[privacy]\nmin_score = 2\n', "privacy.min_score"),
                           ('[privacy]\nignore = ["NAMES"]\n', "unknown finding type.*NAMES")):
        path.write_text(body)
        with pytest.raises(ConfigError, match=expected):
            load_project_config(path)


def test_ner_models_and_ignored_types_reach_the_gate():
    assert PrivacyConfig(ner_model="en_core_web_sm").ner_models == ("en_core_web_sm",)
    assert PrivacyConfig(ner_model=["a", "b"]).ner_models == ("a", "b")
    pc = ProjectConfig()
    pc.privacy.ignore = ["AGE_OVER_89"]
    pc.llm.base_url = "https://api.example.com/v1"
    gate = privacy.policy_for(pc)
    assert gate.scanning and gate.ignore == {"AGE_OVER_89"} and gate.endpoint == "https://api.example.com"
    decision = privacy.decide(gate, privacy.scanner_for(gate), [("question", "A 95-year-old woman falls.")],
                              language="en")
    assert decision.action == "send"
    pc.screen.judge_base_url = "http://127.0.0.1:9000/v1"
    assert not privacy.policy_for(pc, judge=True).scanning  # the judge is local; drafting is not
