"""Transfer rules: which target variables to fill, from which source names, and what to do on mismatch.

Rules map *target* names to *source* names. Every regex matches a whole name, run by RE2 in linear
time (:mod:`.patterns`). Rules come from a YAML/JSON file, a plain dict, or a :class:`Rules`; they
are untrusted: a file is read within a size limit, its nesting and entry count are bounded, and a
``py:`` builder in it runs only when the caller allowed code (:mod:`warmstart.tables.code_policy`).
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import InputLimitError, UsageError
from ..storage import RULES_BYTES, RULES_ENTRIES, check_nesting, read_bytes, resolve
from ..tables import refuse_code_in_rules
from .blocks import BlockOp, Concat
from .initializers import Initializer
from .parity import VerifyRules
from .patterns import compile_pattern, compile_template
from .plan import MAIN_SOURCE

if TYPE_CHECKING:
    import yaml

__all__ = ["Rules", "Transform", "VocabRemap", "DEFAULT_EXCLUDE", "load_rules"]

_SOURCE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# The lists whose length planning's cost grows with (each entry a pattern, a rule or a source).
_COUNTED = ("include", "exclude", "rename", "transforms", "fill_from", "sources")

# Bookkeeping that a warm start should not carry over: counters and optimizer state
# (TF1 slot names, Keras 3 optimizer variables, TF2 slot paths).
DEFAULT_EXCLUDE: tuple[str, ...] = (
    "global_step",
    "save_counter",
    r".*/(Adam|Adagrad|Momentum|RMSProp|Ftrl|Adadelta)(_\d+)?",
    r".*/(adam_m|adam_v)",
    r"(.*/)?optimizer/.*",
    r".*/\.OPTIMIZER_SLOT/.*",
)


class VocabRemap(BaseModel):
    """A vocabulary remap with the semantics of TF's ``VocabInfo``: the target's rows (``axis: 0``) or
    columns (``axis: 1``) follow the ``new`` vocabulary, each taken from the source's row of the same
    token in the ``old`` vocabulary (one token a line, any fsspec URL)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    old: str = Field(description="The source's vocabulary file (one token a line).")
    new: str = Field(description="The target's vocabulary file (one token a line).")
    axis: Literal[0, 1] = Field(0, description="0: rows (embeddings, biases); 1: columns (softmax kernels).")
    num_oov_buckets: int = Field(0, ge=0, description="Rows after the new vocabulary: never from the source.")
    old_vocab_size: int = Field(-1, ge=-1, description="Use only the first N old tokens (-1: all), as TF's.")
    new_vocab_size: int = Field(-1, ge=-1, description="Use only the first N new tokens (-1: all), as TF's "
                                "VocabInfo (a feature column with vocabulary_size reads that many).")
    new_row: Literal["init", "zeros", "mean"] | Initializer = Field(
        "init", description="Rows without a source: the target's initial value, zeros, the mean of the copied rows, "
        "or an initializer ({constant: 0.42}, {random_uniform: {minval, maxval, seed}}, {random_normal: {mean, "
        "stddev, seed}}, {truncated_normal: {mean, stddev, seed}}) as TF's VocabInfo backup_initializer.")


class Transform(BaseModel):
    """A per-variable transform: target variables whose name matches ``target`` (whole name) get their
    source's value remapped by ``vocab``, its ``overlap`` region copied (initial values elsewhere), or made by
    block ``ops`` (slice, split, permute, transpose, reshape, add: :mod:`warmstart.planning.blocks`) from one
    source or from the ``concat`` of several. ``from`` names the source variable instead of the rename rules."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True, populate_by_name=True,
                              serialize_by_alias=True)

    target: str = Field(description="Regex over target names (whole name).")
    from_: str | None = Field(None, alias="from", description="The source variable's name (default: the target's "
                              "name after the rename rules); \\1 back-references to the target regex's groups.")
    vocab: VocabRemap | None = None
    overlap: bool = Field(False, description="Copy the region both shapes share; the target's initial value elsewhere.")
    new_values: Literal["init", "zeros"] | Initializer = Field(
        "init", description="With overlap, outside the region: the target's initial value, zeros, or an initializer "
        "(as vocab's new_row).")
    ops: list[BlockOp] = Field(default_factory=list, description="Block ops applied in order to the source value "
                               "(or to the concat): slice, split, permute, transpose, reshape, add.")
    concat: Concat | None = Field(None, description="The source value is these source variables joined along an axis.")

    @field_validator("target")
    @classmethod
    def _target_compiles(cls, pattern: str) -> str:
        _compile(pattern)
        return pattern

    def model_post_init(self, _context: Any) -> None:
        kinds = [self.vocab is not None, self.overlap, bool(self.ops) or self.concat is not None]
        if sum(kinds) != 1:
            raise ValueError("a transform needs exactly one of vocab: {...}, overlap: true, "
                             "or ops: [...] / concat: {...}")
        if self.concat is not None and self.from_ is not None:
            raise ValueError("concat names its sources: from: is not allowed with it")
        for name in [self.from_] if self.concat is None else self.concat.sources:
            try:
                if name is not None:
                    _check_template(self.target, name)
            except re.error as exc:
                raise ValueError(f"source name {name!r} for {self.target!r}: {exc}") from None

    def source_names(self, target_name: str) -> list[str]:
        """The source names ``from`` or ``concat`` give for ``target_name`` (back-references expanded); []: the
        rename rules name the source."""
        names = self.concat.sources if self.concat is not None else [self.from_] if self.from_ is not None else []
        match = compile_pattern(self.target).fullmatch(target_name)
        return [compile_template(n, self.target).expand(match) for n in names] if match else []

    @property
    def blocks(self) -> bool:
        """Block ops or a concat (not a vocabulary remap or overlap copy)."""
        return bool(self.ops) or self.concat is not None


class Rules(BaseModel):
    """What to copy and how strictly. The defaults are strict: anything unexpected is an error."""

    # defer_build (every rules model): the validator is built when the rules are first validated, one for the
    # whole tree of models, not one per model class at import (~25 ms of a transfer's start-up).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    # The defaults are also written into the JSON schema, so that a form (the Prefect UI's) shows them.
    include: list[str] = Field(
        default_factory=lambda: [".*"], json_schema_extra={"default": [".*"]}, min_length=1,
        description="Regexes over target names to fill from the source (at least one).",
    )
    exclude: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDE), json_schema_extra={"default": list(DEFAULT_EXCLUDE)},
        description="Regexes over target names never taken from the source (they keep their initial value).",
    )
    # Strings first: a form (the Prefect UI's) then offers one text field per rule, in which a template like
    # bert/\1 is typed as it is (no JSON quoting or escaping); rules files keep their pairs.
    rename: Annotated[list[str], Field(title="regex -> template")] | Annotated[
            list[tuple[str, str | None]], Field(title="[regex, template] pairs")] = Field(
        default_factory=list,
        description="Ordered rules, first match wins: 'target regex -> source name template' (\\1 back-references; "
        "nothing after the arrow: keep the initial value); or, all of them, [target regex, template or null] pairs.",
    )
    on_missing: Literal["error", "init"] = Field("error", description="A target variable absent from the source.")
    on_shape_mismatch: Literal["error", "skip"] = Field("error", description="Source and target shapes differ.")
    on_dtype_mismatch: Literal["error", "skip", "cast"] = Field("error", description="Source and target dtypes differ.")
    allow_lossy_cast: bool = Field(False, description="With on_dtype_mismatch: cast, allow casts that lose values.")
    allow_shared_source: bool = Field(
        False, description="Allow one source variable to initialize several target variables."
    )
    source_structure: str | None = Field(
        None, description="The model a TF2 checkpoint source was written from (its .keras file or a "
        "py:module:function builder): its variables are then named by layer names, not by object paths through "
        "lists (which shift when a layer is inserted).",
    )
    transforms: list[Transform] = Field(
        default_factory=list, description="Per-variable transforms (vocabulary remap, overlap copy, block ops and "
        "concat); a target variable matched by two of them is an error.")
    min_coverage: Annotated[float, Field(title="fraction", ge=0.0, le=1.0)] | None = Field(
        None, description="Fraction of target parameters (by element count) that must be copied; "
        "unset, a plan that copies nothing at all fails (write 0 to allow it).",
    )
    match: Literal["names", "structure"] = Field(
        "names", description="names: by variable names (Keras: by layer names; layers Keras named by counting "
        "by structure); structure: every Keras variable by its place in the model's structure (layer classes "
        "and order), as Keras' load_weights does: for the same model with other layer names.")
    sources: dict[str, str] = Field(
        default_factory=dict, description="More sources by name (name: URL of a checkpoint or Keras file); the "
        "source given as SOURCE is named 'main'. 'fill_from' says which target variables each one fills.")
    fill_from: list[tuple[str, str | list[str]]] = Field(
        default_factory=list, description="Ordered [target regex, source name] pairs (first match "
        "wins; unmatched: 'main'); a list of names is a fallback order: the first source that has the variable.")
    verify: VerifyRules | None = Field(
        None, description="What the parity certificate (transfer --verify, warmstart verify) compares besides the "
        "layers copied whole: declared output pairs, vocabulary lookups, the models it builds, the probes.")

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, doc: Any) -> Any:
        if isinstance(doc, dict):
            _check_size(doc)
        return doc

    @field_validator("sources")
    @classmethod
    def _source_names(cls, sources: dict[str, str]) -> dict[str, str]:
        for name in sources:
            if name == MAIN_SOURCE:
                raise ValueError(f"{MAIN_SOURCE!r} names the source given as SOURCE; choose another name")
            if not _SOURCE_NAME.fullmatch(name):
                raise ValueError(f"source name {name!r}: letters, digits, '_', '.', '-', not starting with a digit")
        return sources

    @field_validator("fill_from")
    @classmethod
    def _fill_from_compiles(cls, pairs: list[tuple[str, str | list[str]]]) -> list[tuple[str, str | list[str]]]:
        for pattern, names in pairs:
            _compile(pattern)
            if isinstance(names, list) and (not names or len(set(names)) != len(names)):
                raise ValueError(f"fill_from {pattern!r}: a fallback order names each source once, at least one")
        return pairs

    @field_validator("include", "exclude")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            _compile(p)
        return patterns

    @field_validator("rename")
    @classmethod
    def _renames_compile(cls, rules: list[str] | list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
        pairs = [_rename_pair(rule) if isinstance(rule, str) else rule for rule in rules]
        for pattern, template in pairs:
            _compile(pattern)
            if template is not None:
                try:
                    _check_template(pattern, template)
                except re.error as exc:
                    raise ValueError(f"rename template {template!r} for {pattern!r}: {exc}") from None
        return pairs

    def code_fields(self) -> list[tuple[str, str | None]]:
        """(field, value) of every field that may name a ``py:`` builder (data: it runs only if code is allowed)."""
        return [("source_structure", self.source_structure), *(self.verify.code() if self.verify else [])]

    def user_excludes(self) -> list[str]:
        """Exclude patterns the user wrote (the defaults may match nothing without complaint)."""
        return [p for p in self.exclude if p not in DEFAULT_EXCLUDE]


def _rename_pair(rule: str) -> tuple[str, str | None]:
    """``'model/(.*) -> bert/\\1'`` as a pair; nothing after the arrow keeps the initial value (None)."""
    if rule.count("->") != 1:
        raise ValueError(f"rename rule {rule!r}: expected 'target regex -> source name template' "
                         "(one arrow; nothing after it keeps the initial value)")
    pattern, _, template = (part.strip() for part in rule.partition("->"))
    if not pattern:
        raise ValueError(f"rename rule {rule!r}: no target regex before the arrow")
    return pattern, template or None


def _compile(pattern: str) -> None:
    compile_pattern(pattern)  # raises ValueError naming the pattern and what RE2 refuses


def _check_template(pattern: str, template: str) -> None:
    """Raises ``re.error`` unless ``template`` is a valid template for ``pattern`` (its escapes and group
    references checked by Python's own template parser, as the rule will be applied)."""
    compile_template(template, pattern)


def load_rules(rules: Rules | dict[str, Any] | str | Path | None, storage_options: dict[str, Any] | None = None) -> Rules:
    """A :class:`Rules` from a model, a dict, or a YAML/JSON file path or URL.

    Raises :class:`UsageError` when the rules are invalid, naming every problem.
    """
    if rules is None:
        return Rules()
    if isinstance(rules, Rules):
        _refuse_code(rules, "rules")
        return rules
    origin = "rules"
    if isinstance(rules, (str, Path)):
        origin = str(rules)
        rules = _parse_rules_file(origin, storage_options)
    if not isinstance(rules, dict):
        raise UsageError(f"{origin}: rules must be a mapping of fields, received: {type(rules).__name__}")
    try:
        model = Rules.model_validate(rules)
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise UsageError(f"{origin}: invalid rules ({exc.error_count()} problem(s)): {problems}") from None
    _refuse_code(model, origin)
    return model


def _refuse_code(rules: Rules, origin: str) -> None:
    for field_name, value in rules.code_fields():
        refuse_code_in_rules(value, origin, field_name)


def _problem(err: Any) -> str:
    """One validation problem in words, where it is: an unknown key with the known key it most looks like."""
    extra = err["type"] == "extra_forbidden"
    where, models = _walk(err["loc"][:-1] if extra else err["loc"])
    if not extra:
        return f"{where or '(root)'}: {err['msg']}"
    key = str(err["loc"][-1])
    known = list(dict.fromkeys(field.alias or name for model in models for name, field in model.model_fields.items()))
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
    return f"{where + ': ' if where else ''}unknown key {key!r} ({hint})"


def _walk(loc: tuple[Any, ...]) -> tuple[str, list[type[BaseModel]]]:
    """Where pydantic's ``loc`` is in a rules document, in its keys and indices (``transforms.0.vocab``: without
    the union members pydantic names, ``Initializer``), and the models that may be there."""
    shown: list[str] = []
    models: list[type[BaseModel]] = [Rules]
    for part in loc:
        if isinstance(part, int):
            shown.append(str(part))  # an element of a list: its type was unwrapped with the list
            continue
        fields = [field for model in models for name, field in model.model_fields.items() if part in (name, field.alias)]
        if fields:
            shown.append(part)
            models = [m for field in fields for m in _models_in(field.annotation)]
        else:  # a member of a union, by its type
            models = [m for m in models if m.__name__ == part] or models
    return ".".join(shown), models


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models a field may hold, through optional values, unions, lists and ``Annotated``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _parse_rules_file(origin: str, storage_options: dict[str, Any] | None) -> Any:
    """The document in the rules file at ``origin``: read within its size limit, parsed, its nesting bounded."""
    try:
        data = read_bytes(resolve(origin, storage_options), RULES_BYTES)
    except InputLimitError as exc:
        raise UsageError(f"rules: {exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{origin}: not a text file ({exc.reason} at byte {exc.start})") from None
    document = _json_document(text)
    if document is not None:
        return document
    import yaml  # ~10 ms of a cold process: only for the rules files that need it

    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{origin}: not valid YAML/JSON: {_yaml_problem(exc)}") from None
    except RecursionError:  # the pure-Python parser recurses per level (never the C one: it crashes)
        raise UsageError(f"{origin}: nested too deeply to be rules") from None


def _json_document(text: str) -> dict[str, Any] | None:
    """A rules file that is a JSON object, parsed by the JSON parser (what YAML would read from it too); None for
    anything else (YAML, JSON with NaN or Infinity, broken JSON), which the YAML parser then reads or explains."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        doc = json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _check_size(doc: dict[str, Any]) -> None:
    """Bound what planning costs before any regex is compiled: the nesting, and the number of entries
    (raises ``ValueError``)."""
    try:
        check_nesting(doc, "the rules")
    except InputLimitError as exc:
        raise ValueError(str(exc)) from None
    entries = sum(len(doc[key]) for key in _COUNTED if isinstance(doc.get(key), (list, dict)))
    verify = doc.get("verify")
    if isinstance(verify, dict):
        entries += sum(len(value) for value in verify.values() if isinstance(value, list))
    if entries > RULES_ENTRIES.value:
        raise ValueError(f"{entries:,} entries (include, exclude, rename, transforms, fill_from, sources, verify's "
                         "lists), over the "
                         f"limit of {RULES_ENTRIES.words('entries')}: raise it if these rules are right")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: what the YAML parser found and where (its own message spans several lines)."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem
