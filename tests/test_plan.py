"""The planner on hand-made tables: one test per rule and per status."""

from __future__ import annotations

import pytest

import warmstart
from warmstart import Rules, UsageError, Variable, VariableTable, load_rules
from warmstart.planning import make_plan


def table(*specs, kind="tf1-checkpoint", origin="mem"):
    return VariableTable.of([Variable(n, tuple(s), d, n) for n, s, d in specs], origin, kind)


SOURCE = table(
    ("bert/encoder/w", [4, 4], "float32"),
    ("bert/encoder/b", [4], "float32"),
    ("bert/embeddings", [10, 4], "float32"),
    ("bert/encoder/w/adam_m", [4, 4], "float32"),
    ("global_step", [], "int64"),
)


def plan(target, **rules):
    return make_plan(SOURCE, target, Rules(**rules))


def entry(p, name):
    return next(e for e in p.entries if e.target == name)


def test_same_names_copy_and_unused_sources_are_listed():
    p = plan(table(("bert/encoder/w", [4, 4], "float32"), ("bert/encoder/b", [4], "float32")))
    assert p.ok
    assert [e.action for e in p.entries] == ["copy", "copy"]
    assert set(p.unused_source) == {"bert/embeddings", "bert/encoder/w/adam_m", "global_step"}
    assert p.coverage == 1.0


def test_missing_variable_is_an_error_by_default_and_suggests_the_closest_name():
    p = plan(table(("bert/encoder/ww", [4, 4], "float32")))
    assert not p.ok
    e = entry(p, "bert/encoder/ww")
    assert e.action == "error"
    assert "'bert/encoder/w'" in e.reason and "on_missing" in e.reason


def test_on_missing_init_keeps_the_initial_value():
    p = plan(table(("new/thing", [3], "float32"), ("bert/encoder/b", [4], "float32")), on_missing="init")
    assert p.ok
    assert entry(p, "new/thing").action == "init"


def test_a_plan_that_copies_nothing_fails_unless_min_coverage_allows_it():
    """A warm start that copies nothing is no warm start: the default fails it; min_coverage written (0
    too) says what the user accepts."""
    target = table(("new/thing", [3], "float32"))
    p = plan(target, on_missing="init")
    assert not p.ok and entry(p, "new/thing").action == "init"
    assert p.rule_errors == ("no variable would be copied: none of the target's 1 variables takes a source value "
                             "(min_coverage: 0 in the rules allows a transfer that copies nothing)",)
    assert plan(target, on_missing="init", min_coverage=0).ok
    assert Rules().min_coverage is None and Rules(min_coverage=0).min_coverage == 0


def test_rename_with_backreference_takes_the_renamed_source():
    p = plan(table(("model/encoder/w", [4, 4], "float32"), ("model/encoder/b", [4], "float32")),
             rename=[[r"model/(encoder/.*)", r"bert/\1"]])
    assert p.ok
    e = entry(p, "model/encoder/w")
    assert (e.action, e.source) == ("copy", "bert/encoder/w")
    assert "rename[0]" in e.reason


def test_rename_to_null_keeps_the_initial_value():
    p = plan(table(("head/w", [4, 2], "float32")), rename=[["head/.*", None]], min_coverage=0)
    assert p.ok
    e = entry(p, "head/w")
    assert (e.action, e.source) == ("init", None)
    assert "null" in e.reason


def test_rename_rules_as_text_plan_like_pairs():
    """'regex -> template' (one text field per rule in the Prefect form) means the same as the pair."""
    target = table(("model/encoder/w", [4, 4], "float32"), ("head/w", [4, 2], "float32"))
    as_text = plan(target, rename=[r"model/(.*) -> bert/\1", "head/.* ->"])
    as_pairs = plan(target, rename=[["model/(.*)", r"bert/\1"], ["head/.*", None]])
    assert as_text.ok and as_text.to_json()["variables"] == as_pairs.to_json()["variables"]
    assert (entry(as_text, "head/w").action, entry(as_text, "model/encoder/w").source) == ("init", "bert/encoder/w")


def test_first_rename_rule_wins_and_a_shadowed_rule_is_an_error():
    target = table(("model/encoder/w", [4, 4], "float32"))
    p = plan(target, rename=[["model/(.*)", r"bert/\1"], ["model/encoder/w", "bert/embeddings"]])
    assert entry(p, "model/encoder/w").source == "bert/encoder/w"
    assert not p.ok
    assert any("rename[1]" in r for r in p.rule_errors)


def test_rename_rule_that_matches_nothing_is_an_error():
    p = plan(table(("bert/encoder/b", [4], "float32")), rename=[["modle/(.*)", r"bert/\1"]])
    assert not p.ok
    assert p.rule_errors == ("rename[0] 'modle/(.*)' -> 'bert/\\\\1' is applied to no target variable "
                             "(it matches none, or only names an earlier rule or an exclude already took)",)


def test_include_restricts_and_an_include_matching_nothing_is_an_error():
    target = table(("bert/encoder/b", [4], "float32"), ("bert/encoder/w", [4, 4], "float32"))
    p = plan(target, include=["bert/encoder/b"])
    assert p.ok
    assert entry(p, "bert/encoder/w").action == "init"
    assert "include" in entry(p, "bert/encoder/w").reason
    p = plan(target, include=["bert/encoder/b", "bert/encodr/.*"])
    assert not p.ok and "include[1]" in p.rule_errors[0]


def test_default_excludes_keep_counters_and_slots_at_initial_value_without_complaint():
    target = table(("bert/encoder/w", [4, 4], "float32"), ("global_step", [], "int64"),
                   ("bert/encoder/w/adam_m", [4, 4], "float32"), ("dense/kernel/Adam_1", [4, 4], "float32"),
                   ("optimizer/_variables/1", [4], "float32"))
    p = plan(target, on_missing="init")
    assert p.ok
    assert [entry(p, n).action for n in ("global_step", "bert/encoder/w/adam_m", "dense/kernel/Adam_1",
                                           "optimizer/_variables/1")] == ["init"] * 4
    assert entry(p, "bert/encoder/w").action == "copy"


def test_a_user_exclude_matching_nothing_is_an_error():
    p = plan(table(("bert/encoder/b", [4], "float32")), exclude=["global_step", "bert/encodr/.*"])
    assert not p.ok
    assert p.rule_errors == ("exclude[1] 'bert/encodr/.*' matches no target variable; did you mean "
                             "'bert/encoder/.*'?",)


TARGET = table(("model/encoder/layer_0/attention/query/kernel", [4, 4], "float32"),
               ("model/encoder/layer_0/attention/query/bias", [4], "float32"),
               ("model/embeddings/word_embeddings", [10, 4], "float32"), ("head/dense/kernel", [4, 2], "float32"))


@pytest.mark.parametrize("rules, error", [
    ({"include": ["modle/encoder/.*"]}, "include[0] 'modle/encoder/.*' matches no target variable; did you mean "
                                        "'model/encoder/.*'?"),
    ({"exclude": ["model/encoder/layer_0/atention/.*"]},
     "exclude[0] 'model/encoder/layer_0/atention/.*' matches no target variable; did you mean "
     "'model/encoder/layer_0/attention/.*'?"),
    ({"rename": [["^model/embedings/(.*)$", "bert/embeddings/\\1"]]}, "did you mean '^model/embeddings/(.*)$'?"),
    ({"transforms": [{"target": "model/embeddings/word_embedings", "overlap": True}]},
     "transforms[0] 'model/embeddings/word_embedings' matches no target variable; did you mean "
     "'model/embeddings/word_embeddings'?"),
    ({"sources": {"other": "x"}, "fill_from": [["hed/.*", "other"]]}, "did you mean 'head/.*'?"),
    # a typo after the first regex syntax: the closest names, most alike first
    ({"include": ["model/encoder/layer_0/(atention|x)/query/kernel"]},
     "closest target names: 'model/encoder/layer_0/attention/query/kernel', "
     "'model/encoder/layer_0/attention/query/bias'"),
])
def test_a_rules_pattern_that_matches_nothing_says_what_was_likely_meant(rules, error):
    tables = {"other": SOURCE} if "sources" in rules else {}
    p = make_plan(SOURCE, TARGET, Rules(on_missing="init", **rules), sources=tables)
    assert any(error in problem for problem in p.rule_errors), p.rule_errors


def test_a_rename_rule_shadowed_by_an_earlier_one_gets_no_spelling_hint():
    p = plan(TARGET, on_missing="init", rename=[["model/(.*)", "bert/\\1"], ["model/encoder/(.*)", "x/\\1"]])
    assert [e for e in p.rule_errors if e.startswith("rename[1]")] == [
        "rename[1] 'model/encoder/(.*)' -> 'x/\\\\1' is applied to no target variable (it matches none, or only names "
        "an earlier rule or an exclude already took)"]


@pytest.mark.parametrize("bad, says", [
    ({"renme": []}, "unknown key 'renme' (did you mean 'rename'?)"),
    ({"on_mising": "init"}, "unknown key 'on_mising' (did you mean 'on_missing'?)"),
    ({"transforms": [{"target": "a", "overlap": True, "form": "b"}]},
     "transforms.0: unknown key 'form' (did you mean 'from'?)"),
    ({"transforms": [{"target": "a", "ops": [{"slice": {"strat": 1}}]}]},
     "transforms.0.ops.0.slice: unknown key 'strat' (did you mean 'start'?)"),
    ({"transforms": [{"target": "a", "vocab": {"old": "o", "new": "n", "new_row": {"uniform": {}}}}]},
     "transforms.0.vocab.new_row: unknown key 'uniform' (did you mean 'random_uniform'?)"),
    ({"xyz": 1}, "unknown key 'xyz' (known keys: include, exclude, rename, on_missing,"),
])
def test_an_unknown_rules_key_names_the_key_it_most_looks_like(bad, says):
    with pytest.raises(UsageError) as info:
        load_rules(bad)
    assert says in str(info.value)
    assert "Extra inputs are not permitted" not in str(info.value)


def test_shape_mismatch_is_an_error_by_default_and_skip_when_asked():
    target = table(("bert/embeddings", [12, 4], "float32"))
    p = plan(target)
    e = entry(p, "bert/embeddings")
    assert (e.action, e.source_shape) == ("error", (10, 4))
    assert "[10, 4]" in e.reason and "[12, 4]" in e.reason
    p = plan(target, on_shape_mismatch="skip", min_coverage=0)
    assert p.ok and entry(p, "bert/embeddings").action == "skip"
    assert p.coverage == 0.0


def test_unknown_target_dimensions_accept_any_size():
    p = plan(table(("bert/embeddings", [None, 4], "float32")))
    assert entry(p, "bert/embeddings").action == "copy"


def test_dtype_mismatch_error_skip_and_value_preserving_cast():
    target = table(("bert/encoder/b", [4], "float64"))
    assert entry(plan(target), "bert/encoder/b").action == "error"
    assert entry(plan(target, on_dtype_mismatch="skip"), "bert/encoder/b").action == "skip"
    e = entry(plan(target, on_dtype_mismatch="cast"), "bert/encoder/b")
    assert (e.action, e.source_dtype, e.dtype) == ("cast", "float32", "float64")
    assert "value-preserving" in e.reason


def test_lossy_cast_needs_allow_lossy_cast():
    target = table(("bert/encoder/b", [4], "bfloat16"))
    e = entry(plan(target, on_dtype_mismatch="cast"), "bert/encoder/b")
    assert e.action == "error" and "allow_lossy_cast" in e.reason
    e = entry(plan(target, on_dtype_mismatch="cast", allow_lossy_cast=True), "bert/encoder/b")
    assert e.action == "cast" and "lossy" in e.reason


def test_string_and_numeric_never_cast():
    src = table(("vocab", [3], "string"))
    p = make_plan(src, table(("vocab", [3], "int32")), Rules(on_dtype_mismatch="cast", allow_lossy_cast=True))
    assert p.entries[0].action == "error" and "no cast" in p.entries[0].reason


def test_two_targets_from_one_source_is_an_error_unless_allowed():
    target = table(("tower_a/w", [4, 4], "float32"), ("tower_b/w", [4, 4], "float32"))
    rename = [["tower_./w", "bert/encoder/w"]]
    p = plan(target, rename=rename)
    assert not p.ok
    assert "also fills 'tower_b/w'" in entry(p, "tower_a/w").reason
    p = plan(target, rename=rename, allow_shared_source=True)
    assert p.ok and p.counts["copy"] == 2


def test_coverage_counts_elements_and_min_coverage_fails_the_plan():
    target = table(("bert/encoder/w", [4, 4], "float32"), ("head/w", [4, 12], "float32"))
    p = plan(target, on_missing="init")
    assert p.coverage == pytest.approx(16 / 64)
    assert p.ok
    p = plan(target, on_missing="init", min_coverage=0.5)
    assert not p.ok and "below min_coverage" in p.rule_errors[0]


def test_plan_json_has_the_contract_fields():
    p = plan(table(("bert/encoder/w", [4, 4], "float32")))
    doc = p.to_json()
    assert doc["status"] == "ok"
    assert doc["coverage"] == 1.0
    assert set(doc["variables"][0]) >= {"target", "source", "action", "shape", "dtype", "reason"}
    assert "global_step" in doc["unused_source"]


def test_failure_message_counts_problems_and_shows_the_first():
    p = plan(table(("x", [1], "float32"), ("y", [1], "float32"), ("bert/encoder/b", [4], "float32")))
    msg = p.failure_message()
    assert "2 problem(s)" in msg and "'x'" in msg and "1 more" in msg


def test_rules_from_dict_file_and_model(tmp_path):
    f = tmp_path / "rules.yaml"
    f.write_text("rename:\n  - ['model/(.*)', 'bert/\\1']\non_missing: init\n")
    assert load_rules(str(f)).rename == [("model/(.*)", r"bert/\1")]
    assert load_rules({"on_missing": "init"}).on_missing == "init"
    assert load_rules(Rules()) == Rules()


@pytest.mark.parametrize("bad, fragment", [
    ({"include": ["("]}, "invalid regex '('"),
    ({"rename": [["a/.*", r"b/\1"]]}, "refers to group 1"),
    ({"on_missing": "ignore"}, "on_missing"),
    ({"min_coverage": 2}, "min_coverage"),
    ({"exclud": []}, "exclud"),
    ({"include": []}, "include"),  # nothing would be copied: a form's emptied list, not a plan
    ({"rename": ["model/(.*) bert/\\1"]}, "expected 'target regex -> source name template'"),
    ({"rename": ["a -> b -> c"]}, "one arrow"),
    ({"rename": [" -> bert/x"]}, "no target regex"),
    ({"rename": ["a/.* -> b/\\1"]}, "refers to group 1"),
    ({"rename": ["a -> b", ["c", "d"]]}, "rename"),  # one form per list
])
def test_invalid_rules_are_usage_errors_naming_the_field(bad, fragment):
    with pytest.raises(UsageError, match=r"invalid rules") as info:
        load_rules(bad)
    assert fragment in str(info.value)


def test_public_plan_accepts_tables_and_rule_dicts():
    p = warmstart.plan(SOURCE, table(("bert/encoder/b", [4], "float32")), rules={"on_missing": "init"})
    assert p.ok and p.counts["copy"] == 1
