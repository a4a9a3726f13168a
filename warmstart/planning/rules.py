"""Transfer rules: which target variables to fill, from which source names, and what to do on mismatch.

Rules map *target* names to *source* names. Every regex matches a whole name, run by RE2 in linear
time (:mod:`.patterns`). These models are the rules' schema (the Prefect UI's form is drawn from it) and read
every document :mod:`.plain_rules` leaves to them; :mod:`.rules_files` reads rules as given.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import UsageError
from .blocks import BlockOp, Concat
from .initializers import Initializer
from .parity import VerifyRules
from .patterns import compile_pattern, compile_template
from .rule_checks import (DEFAULT_EXCLUDE, check_fill_from, check_patterns, check_size, check_source_names,
                          check_template, rename_pairs)

__all__ = ["Rules", "Transform", "VocabRemap", "DEFAULT_EXCLUDE", "validate_rules"]


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
        compile_pattern(pattern)
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
                    check_template(self.target, name)
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
            check_size(doc)
        return doc

    _source_names = field_validator("sources")(check_source_names)
    _fill_from_compiles = field_validator("fill_from")(check_fill_from)
    _patterns_compile = field_validator("include", "exclude")(check_patterns)
    _renames_compile = field_validator("rename")(rename_pairs)

    def code_fields(self) -> list[tuple[str, str | None]]:
        """(field, value) of every field that may name a ``py:`` builder (data: it runs only if code is allowed)."""
        return [("source_structure", self.source_structure), *(self.verify.code() if self.verify else [])]

    def user_excludes(self) -> list[str]:
        """Exclude patterns the user wrote (the defaults may match nothing without complaint)."""
        return [p for p in self.exclude if p not in DEFAULT_EXCLUDE]


def validate_rules(doc: dict[str, Any], origin: str) -> Rules:
    """``doc`` as a :class:`Rules`. Raises :class:`UsageError` naming every problem and where it is."""
    try:
        return Rules.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise UsageError(f"{origin}: invalid rules ({exc.error_count()} problem(s)): {problems}") from None


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
