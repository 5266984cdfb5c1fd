"""The one configuration hash: stable across key order and runs, sensitive to every value, used by all its callers."""

from __future__ import annotations

from rapid_agent.eval.runner import fingerprint
from rapid_agent.hashing import config_hash


def test_equal_configurations_hash_equal_and_any_change_shows() -> None:
    config = {"lr": 1e-3, "levels": [1, 2], "prompts": {"caption": "Describe."}}
    assert config_hash(config) == config_hash(dict(reversed(list(config.items()))))
    assert config_hash(config) != config_hash({**config, "levels": [2, 1]})
    assert config_hash(config) != config_hash({**config, "prompts": {"caption": "Describe!"}})
    # the value is fixed by the bytes hashed, so a key written by another machine or release still matches
    assert config_hash({"a": 1}) == "015abd7f5cc57a2d" and len(config_hash({"a": 1}, length=40)) == 40


def test_eval_settings_fingerprints_are_the_shared_hash() -> None:
    settings = {"perception": {"temperature": 0.0}, "strict_answers": False}
    assert fingerprint(settings) == config_hash(settings, length=10)
