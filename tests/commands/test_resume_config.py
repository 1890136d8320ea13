"""``same_results_config``: when a saved configuration is a result of the current one."""

from __future__ import annotations

from fedsim.commands.resume import same_results_config

DEFAULT = {"privacy": {"epsilon": 1.0, "placement": "client"}, "training": {"rounds": 50}, "threads": 2}


def test_equal_configurations_match_and_runtime_fields_are_ignored():
    current = {**DEFAULT, "threads": 1}
    assert same_results_config(DEFAULT, current, DEFAULT)


def test_an_option_added_since_matches_only_at_its_default():
    saved = {"privacy": {"epsilon": 1.0}, "training": {"rounds": 50}}
    assert same_results_config(saved, DEFAULT, DEFAULT)
    changed = {**DEFAULT, "privacy": {"epsilon": 1.0, "placement": "aggregate"}}
    assert not same_results_config(saved, changed, DEFAULT)


def test_a_changed_value_or_a_removed_option_is_a_mismatch():
    assert not same_results_config(DEFAULT, {**DEFAULT, "training": {"rounds": 2}}, DEFAULT)
    saved = {**DEFAULT, "training": {"rounds": 50, "gone": 3}}
    assert not same_results_config(saved, DEFAULT, DEFAULT)


def test_tuples_match_their_saved_lists():
    current = {"hidden": (16, 16)}
    assert same_results_config({"hidden": [16, 16]}, current, current)
