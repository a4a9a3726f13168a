"""The inputs of a transfer: opened once, pinned by version, checked again, and kept away from the output.

``read_rules`` parses the rules at the entrance (a file once, with its version); ``pin_*`` record what a
plan was made from (:class:`~warmstart.planning.PinnedInput`); ``verify`` refuses inputs that changed
since (:class:`~warmstart.errors.InputChangedError`); ``reopen`` opens exactly the objects a plan pinned
(a directory's checkpoint as it was planned, not its newest); ``check_output_for`` refuses an output that
is unusable or could reach any of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..errors import InputChangedError, InputNotFoundError, UsageError
from ..formats import OUTPUT_LAYOUT, is_reader, open_source
from ..formats.bundle import BundleReader
from ..planning import MAIN_SOURCE, PinnedFile, PinnedInput, Plan, load_rules
from ..storage import (Location, canonical_path, check_output, check_output_location, object_version,
                       refuse_unfinished, resolve)
from ..tables import VariableTable, checkpoint_table, signature_for, signature_of, table_from_reader, target_kind

if TYPE_CHECKING:
    from ..formats import KerasWeightsReader
    from ..planning import ParsedRules

    SourceReader = BundleReader | KerasWeightsReader

__all__ = ["Opened", "read_rules", "target_for", "pin_source", "pin_target", "pin_rules_files",
           "verify", "reopen", "check_output_for", "input_places"]


@dataclass(frozen=True)
class Opened:
    """A plan and the inputs it was made from, opened once: the sources' readers by name (``main`` first;
    none for sources given as tables) and the target's template reader (a checkpoint, a Keras weights file)."""

    plan: Plan
    readers: Mapping[str, SourceReader]
    template: SourceReader | None = None

    @property
    def reader(self) -> SourceReader:
        return self.readers[MAIN_SOURCE]


def read_rules(rules: ParsedRules | dict[str, Any] | str | os.PathLike | None,
               storage_options: dict[str, Any] | None = None) -> tuple[ParsedRules, PinnedInput | None]:
    """The rules, parsed once (a file read once), and the file they came from with its version (None for
    rules given as values). Raises :class:`UsageError` for invalid rules."""
    if not isinstance(rules, (str, os.PathLike)):
        return load_rules(rules, storage_options), None
    loc = resolve(rules, storage_options)
    version = object_version(loc)
    model = load_rules(loc.url, storage_options)
    return model, PinnedInput("rules", "rules", os.fspath(rules), loc.url, "rules", (PinnedFile(loc.url, version),))


def target_for(target: Any, storage_options, source_kind: str,
               strategy: str) -> tuple[VariableTable, SourceReader | None]:
    """The target's table and, for a template (a checkpoint, a Keras weights file), its opened reader
    (the stream's initial values). A ``.keras`` target of a Keras-file source is its own weights file
    unless the model is to be built (``restore``/``assign``)."""
    if isinstance(target, os.PathLike):
        target = os.fspath(target)
    kind = target_kind(target) if isinstance(target, str) else "live"
    if kind == "checkpoint":
        template = open_source(target, storage_options)  # refused when it lies in an unfinished output
        return checkpoint_table(template, "target"), template
    if strategy in ("restore", "assign"):
        return signature_of(target, storage_options), None
    if kind == "keras-weights" or (kind == "keras" and source_kind == "keras-weights"):
        weights = open_source(target, storage_options)
        return table_from_reader(weights), weights
    return signature_for(target, source_kind, storage_options), None


def _given(value: Any) -> str:
    return os.fspath(value) if isinstance(value, (str, os.PathLike)) else getattr(value, "url", None) or repr(value)


def _files(locations: Iterable[Location], known: Mapping[str, dict[str, Any]] | None = None) -> tuple[PinnedFile, ...]:
    """Each file with its version: ``known`` versions (an index as it was read) where given, else asked now
    (None for a file that is not there: reading it fails later, with its own message)."""
    return tuple(PinnedFile(loc.url, (known or {}).get(loc.url) or _version_or_none(loc)) for loc in locations)


def _version_or_none(loc: Location) -> dict[str, Any] | None:
    try:
        return object_version(loc)
    except InputNotFoundError:
        return None


def _reader_pin(role: str, name: str, given: Any, reader: SourceReader) -> PinnedInput:
    bundle = isinstance(reader, BundleReader)
    directory = reader.prefix.parent.url if bundle else None
    files = reader.pinned_files() if bundle else reader.files()  # type: ignore[union-attr]
    return PinnedInput(role, name, _given(given), reader.url, reader.reader_kind,  # type: ignore[arg-type]
                       _files(files, reader.versions), directory)


def pin_source(name: str, given: Any, reader: SourceReader | VariableTable) -> PinnedInput:
    """Source ``name`` as read: its exact checkpoint (or Keras file) and every file's version, with the ``.meta``
    beside a TF1 checkpoint when there is one (it names the variables); a source given as a table is recorded, not
    pinned (nothing of it is read)."""
    if isinstance(reader, VariableTable):
        return PinnedInput("source", name, _given(given), reader.origin, reader.kind, pinned=False)
    return _reader_pin("source", name, given, reader)


def pin_target(target: Any, table: VariableTable, template: SourceReader | None,
               storage_options: dict[str, Any] | None = None, strategy: str = "auto") -> PinnedInput:
    """The target: its template's files (and the ``.meta`` beside a TF1 template, whose Saver's keys name the
    variables and which a building strategy imports), or its file (``.keras``, ``.meta``, signature), by version;
    a builder (code) or a live object is recorded, not pinned."""
    if template is not None:
        pin = _reader_pin("target", "target", target, template)  # with the .meta its table was named by
        meta = template.prefix.with_suffix(".meta") if isinstance(template, BundleReader) else None
        imported = strategy in ("restore", "assign") and meta is not None
        if imported and all(f.url != meta.url for f in pin.files) and _version_or_none(meta) is not None:
            pin = replace(pin, files=(*pin.files, *_files([meta])))
        return pin
    given = _given(target)
    kind = target_kind(given) if isinstance(target, (str, os.PathLike)) else "live"
    if kind in ("builder", "live"):
        return PinnedInput("target", "target", given, table.origin, kind, pinned=False)
    loc = resolve(given, storage_options)
    return PinnedInput("target", "target", given, loc.url, kind, _files([loc]))


def pin_rules_files(rules: ParsedRules, storage_options: dict[str, Any] | None = None) -> tuple[PinnedInput, ...]:
    """The files the rules name: vocabularies and a source's structure (a ``.keras``), which planning reads, and what
    the certificate reads (``verify:``'s models, graphs, probes and vocabularies)."""
    named = [("vocabulary", path) for t in rules.transforms if t.vocab is not None
             for path in (t.vocab.old, t.vocab.new)]
    if rules.source_structure and not rules.source_structure.startswith("py:"):
        named.append(("structure", rules.source_structure))
    if rules.verify is not None:
        named += [(role if role == "vocabulary" else "verification", path) for role, path in rules.verify.files()]
    pins = []
    for role, given in dict.fromkeys(named):  # each file once, in order
        loc = resolve(given, storage_options)
        pins.append(PinnedInput(role, role, given, loc.url, role, _files([loc])))  # type: ignore[arg-type]
    return tuple(pins)


def verify(pins: Iterable[PinnedInput], storage_options: dict[str, Any] | None = None) -> None:
    """Raise :class:`InputChangedError` naming the first input whose files are not the versions pinned (written
    again, replaced, gone)."""
    for pin in pins:
        for f in pin.files:
            now = _version_or_none(resolve(f.url, storage_options))
            if now != f.version:
                state = ("is gone" if now is None else f"appeared ({_version_words(now)})" if f.version is None
                         else f"is now {_version_words(now)}, was {_version_words(f.version)}")
                raise InputChangedError(
                    f"{pin.label} changed after the plan was made: {f.url} {state}. Nothing was published; "
                    "plan again to copy what is there now", pin)


def _version_words(version: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in version.items())


def reopen(plan: Plan, source: Any, target: Any, storage_options: dict[str, Any] | None = None,
           sources: Mapping[str, Any] | None = None, copies: Mapping[str, PinnedInput] | None = None) -> Opened:
    """Readers over exactly the objects ``plan`` pinned, after checking that none changed: a source directory
    whose state file now names a newer checkpoint is read at the checkpoint the plan was made from.
    ``source``/``sources``/``target`` must be what the plan was made for (as given then, or the same place);
    a reader whose name is in ``copies`` is a copy of that pinned source (the flow's cache), checked by its record.
    Raises :class:`UsageError` for inputs the plan was not made for, :class:`InputChangedError` for changed ones."""
    copies = copies or {}
    if not plan.inputs:
        raise UsageError("this plan records no inputs (it was not made by warmstart.plan or warmstart.transfer): "
                         "plan again")
    verify([p for p in plan.pinned() if p.name not in copies or p.role != "source"], storage_options)
    readers = {}
    for pin in plan.pinned("source"):
        given = source if pin.name == MAIN_SOURCE else (sources or {}).get(pin.name)
        readers[pin.name] = _reopened(pin, given, copies.get(pin.name), storage_options)
    target_pin = plan.pinned("target")[0]
    _same_input(target_pin, target, storage_options)
    template = _open_pinned(target_pin, storage_options) if target_pin.kind in ("tf-checkpoint", "keras-weights") \
        else None
    return Opened(plan, readers, template)


def _reopened(pin: PinnedInput, given: Any, copy: PinnedInput | None, storage_options) -> SourceReader:
    if copy is not None:
        if copy != pin or not is_reader(given):
            raise InputChangedError(f"the copy of {pin.label} was made from another version than the plan's", pin)
        return given
    if is_reader(given) and given.url == pin.url:
        return given  # opened by the caller (an index from a cache): its files were just verified
    _same_input(pin, given, storage_options)
    return _open_pinned(pin, storage_options)


def _same_input(pin: PinnedInput, given: Any, storage_options) -> None:
    """Raise :class:`UsageError` unless ``given`` is the input ``pin`` records: the same text, the same
    place, or the object it was resolved to (None: the plan's own)."""
    if given is None or not pin.pinned or not isinstance(given, (str, os.PathLike)):
        return
    text = os.fspath(given)
    if text == pin.given or _place(text, storage_options) in (_place(pin.given, storage_options),
                                                              _place(pin.url, storage_options)):
        return
    raise UsageError(f"the plan was made for {pin.label}, given as {pin.given!r}, not for {text!r}: plan again with "
                     "these inputs, or pass the plan's own")


def _place(url: str, storage_options) -> str:
    return canonical_path(resolve(url.removesuffix(".index"), storage_options))


def _open_pinned(pin: PinnedInput, storage_options) -> SourceReader:
    if pin.kind == "keras-weights":
        from ..formats import KerasWeightsReader

        reader: SourceReader = KerasWeightsReader(pin.url, storage_options)
    else:
        reader = BundleReader.at_prefix(resolve(pin.url, storage_options))
    refuse_unfinished(reader.prefix.parent, reader.url)  # a run's output being written (or killed) is no input
    return reader


def check_output_for(plan: Plan, output: str | Location, storage_options: dict[str, Any] | None = None,
                     overwrite: bool = False) -> Location:
    """Raise :class:`StorageError` unless a transfer of ``plan`` may publish at ``output``: not the place of any
    input the plan was made from (a checkpoint's directory, a file: :func:`check_output_location`), empty or
    ``overwrite``, writable (:func:`check_output`). Reads no tensor and creates nothing; returns the location."""
    out_loc = output if isinstance(output, Location) else resolve(output, storage_options)
    check_output_location(out_loc, *input_places(plan, storage_options))
    check_output(out_loc, OUTPUT_LAYOUT, overwrite)
    return out_loc


def input_places(plan: Plan, storage_options: dict[str, Any] | None = None) -> tuple[list[Location], list[Location]]:
    """The directories (of checkpoints) and the files the plan's inputs occupy: where no output may be."""
    dirs = [resolve(p.directory, storage_options) for p in plan.inputs if p.directory]
    files = [resolve(f.url, storage_options) for p in plan.inputs for f in p.files]
    return dirs, files

