"""Rules read without pydantic (:mod:`warmstart.planning.plain_rules`) are the rules the model reads.

The plain reader takes a document only when every key and value is one the ``Rules`` model keeps as it is; it
must never accept what the model refuses, nor read anything differently. Checked against the model itself on
documents built at random from values both accept, values the model coerces (``"true"``, ``1`` for a flag, a
string fraction), values it refuses, unknown keys, and the fields only the model reads (``transforms``, ``verify``);
then through a plan (same digest) and a transfer's process (pydantic never imported).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from warmstart.errors import UsageError
from warmstart.planning import PlainRules, load_rules
from warmstart.planning.plain_rules import plain_rules
from warmstart.planning.rules import Rules

PATTERNS = [".*", "model/(.*)", "a", r"head/\d+", "(", "x{2", "bert/(embeddings|encoder)/(.*)", ""]
TEMPLATES = [r"bert/\1", "b", None, r"\2", r"\9", "plain", "(", ""]
PLAIN_VALUES: dict[str, list[Any]] = {
    "include": [[".*"], ["model/.*", "head/.*"], [], ["("], [1], "x", None, [".*", None]],
    "exclude": [[], ["global_step"], [r"x\d"], ["("], [b"x"], ("a",)],
    "rename": None,  # built below: strings, pairs, mixed, broken
    "on_missing": ["error", "init", "Init", "skip", 1, None],
    "on_shape_mismatch": ["error", "skip", "init", True],
    "on_dtype_mismatch": ["error", "skip", "cast", "lossy"],
    "allow_lossy_cast": [True, False, 1, 0, "true", "no", None],
    "allow_shared_source": [True, False, "yes", 1.0],
    "source_structure": [None, "model.keras", "py:pkg.mod:build", 3],
    "transforms": [[], None, [{}], {}],
    "min_coverage": [None, 0, 1, 0.3, 1.5, -0.1, True, "0.3", float("nan"), float("inf"), 0.999999],
    "match": ["names", "structure", "Names", None],
    "sources": [{}, {"old": "/tmp/old"}, {"main": "/x"}, {"9x": "/x"}, {"a": 1}, {1: "x"}, ["a"]],
    "fill_from": [[], [["x/.*", "old"]], [["x/.*", ["old", "older"]]], [["x", []]], [["x", ["a", "a"]]],
                  [["(", "old"]], [("x", "old")], [["x"]], [["x", "old", "z"]], "x", [["x", None]]],
    "verify": [None, {}, {"pairs": []}],
}
UNKNOWN = ["on_mising", "renames", "extra"]


def _rename(rng: random.Random) -> Any:
    kind = rng.randrange(6)
    n = rng.randrange(4)
    if kind == 0:
        return [f"{rng.choice(PATTERNS)} -> {rng.choice(TEMPLATES) or ''}" for _ in range(n)]
    if kind == 1:
        return [[rng.choice(PATTERNS), rng.choice(TEMPLATES)] for _ in range(n)]
    if kind == 2:
        return ["a -> b", ["c", "d"]]  # mixed: the model refuses it
    if kind == 3:
        return [rng.choice(["no arrow", "a -> b -> c", " -> b", "a->", ("a", "b"), ["a"], ["a", 1]])]
    return [] if kind == 4 else "a -> b"


def _document(rng: random.Random) -> dict[Any, Any]:
    doc: dict[Any, Any] = {}
    for key in rng.sample(sorted(PLAIN_VALUES), rng.randrange(1, 6)):
        doc[key] = _rename(rng) if key == "rename" else rng.choice(PLAIN_VALUES[key])
    if rng.random() < 0.05:
        doc[rng.choice(UNKNOWN)] = 1
    if rng.random() < 0.02:
        doc[7] = "x"
    return doc


def _model(doc: dict[Any, Any]) -> Rules | None:
    from pydantic import ValidationError

    try:
        return Rules.model_validate(doc)
    except ValidationError:
        return None


def _same(a: Any, b: Any, where: str) -> None:
    """Equal values of the same Python types, all the way down."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} {a!r} against {type(b).__name__} {b!r}"
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_the_plain_record_has_the_models_fields_defaults_and_dump():
    assert list(PlainRules.__dataclass_fields__) == list(Rules.model_fields)
    for mode in ("python", "json"):
        _same(PlainRules().model_dump(mode=mode), Rules().model_dump(mode=mode), f"defaults ({mode})")
    assert PlainRules() == Rules() and Rules() == PlainRules() and PlainRules().model() == Rules()
    assert PlainRules(on_missing="init") != Rules()


def test_what_the_plain_reader_accepts_the_model_accepts_and_reads_the_same():
    rng = random.Random(20261205)
    accepted = refused_by_both = left_to_the_model = 0
    for i in range(8000):
        doc = _document(rng)
        plain, model = plain_rules(doc), _model(doc)
        if plain is None:
            left_to_the_model += model is not None
            refused_by_both += model is None
            continue
        assert model is not None, f"document {i}: read without the model, which refuses it: {doc!r}"
        for name in Rules.model_fields:
            _same(getattr(plain, name), getattr(model, name), f"document {i} {doc!r}: {name}")
        _same(plain.model_dump(mode="json"), model.model_dump(mode="json"), f"document {i}: dump")
        assert plain == model and plain.code_fields() == model.code_fields()
        assert plain.user_excludes() == model.user_excludes()
        accepted += 1
    # the documents reach every outcome, each many times
    assert min(accepted, refused_by_both, left_to_the_model) > 500, (accepted, refused_by_both, left_to_the_model)


@pytest.mark.parametrize("doc", [
    {"include": ["("]}, {"rename": [["a", r"\2"]]}, {"sources": {"main": "/x"}}, {"on_missing": "ini"},
    {"fill_from": [["x", ["a", "a"]]]}, {"on_mising": "init"},
])
def test_a_refused_plain_document_gets_the_models_message(doc):
    with pytest.raises(UsageError) as raised:
        load_rules(doc)
    from warmstart.planning.rules import validate_rules

    with pytest.raises(UsageError) as expected:
        validate_rules(doc, "rules")
    assert str(raised.value) == str(expected.value)


def test_documents_are_read_plain_and_models_are_kept(tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text("rename:\n  - ['^new/(.*)$', 'old/\\1']\non_missing: init\n")
    assert type(load_rules(None)) is PlainRules and type(load_rules(str(rules_file))) is PlainRules
    assert load_rules(str(rules_file)).rename == [("^new/(.*)$", r"old/\1")]
    model = Rules(on_missing="init")
    assert load_rules(model) is model
    assert type(load_rules({"verify": {"pairs": []}})) is Rules  # the model reads what it alone knows
    plain = load_rules({"on_missing": "init"})
    assert load_rules(plain) is plain


def test_a_plan_from_plain_rules_is_the_plan_from_the_model(bert_dirs):
    import warmstart
    from warmstart.examples import EXAMPLE_RULES

    plain = warmstart.plan(str(bert_dirs / "src"), str(bert_dirs / "tpl"), rules=EXAMPLE_RULES)
    model = warmstart.plan(str(bert_dirs / "src"), str(bert_dirs / "tpl"), rules=Rules.model_validate(EXAMPLE_RULES))
    assert type(plain.rules) is PlainRules and type(model.rules) is Rules
    assert plain.ok and plain.digest == model.digest and plain.to_json() == model.to_json()
