"""Publishing an output directory so that no reader ever sees half of it.

Order: the ``.warmstart-incomplete`` marker (also the output's lock, held for the whole run:
:mod:`.output_lock`), checkpoint data and index objects, then the ``checkpoint`` state file, then the
``warmstart.json`` manifest, then the marker's removal. Until the state file exists,
``tf.train.latest_checkpoint(dir)`` finds nothing; a failed run removes what it wrote. The output may
not be, or lie inside, an input's directory, and must be empty unless ``overwrite`` is given; an
output another live run holds is refused at once (:class:`OutputBusyError`).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CorruptCheckpointError, InputError, StorageError
from .locations import Location, is_transient, read_bytes, resolve
from .output_lock import OutputLock, refuse_if_held

__all__ = ["OutputDir", "OutputLayout", "MANIFEST", "INCOMPLETE_MARKER", "PART_PREFIX", "check_output",
           "check_output_location", "publish_directory", "read_manifest"]

log = logging.getLogger(__name__)

MANIFEST = "warmstart.json"
# Written before anything else and removed after the manifest: a directory that holds it (and only
# files a run writes) is what an interrupted run left, and the next run may clear it.
INCOMPLETE_MARKER = ".warmstart-incomplete"
# Data files of a sharded transfer, staged by its units (and their records); renamed when it is published.
PART_PREFIX = ".warmstart-part-"
# The locks this process holds, by output URL: a sharded run's commit (OutputDir.reopen) adopts its prepare's.
_HELD: dict[str, OutputLock] = {}


@dataclass(frozen=True)
class OutputLayout:
    """What the format puts in a published output besides warmstart's own files (the manifest, the marker, staged
    parts): ``prefix`` (every name beginning with it: a checkpoint's index and data files), other ``names`` (a
    Keras weights file), and ``last``, the file written just before the manifest (a TF state file), with its
    text. The formats wing defines it (:data:`warmstart.formats.OUTPUT_LAYOUT`); publishing follows it."""

    prefix: str
    names: tuple[str, ...] = ()
    last: str | None = None
    last_text: str = ""

    def ours(self, name: str) -> bool:
        """A name a run writes (what withdrawing a previous output or clearing leftovers removes)."""
        return name.startswith((self.prefix, ".warmstart-")) or name in self.names or name == self.last


def canonical_path(loc: Location) -> str:
    """Where ``loc`` really is: symlinks and ``..`` resolved locally; protocol + normalized key remotely."""
    if loc.is_local:
        return os.path.realpath(loc.path)
    protocol = loc.fs.protocol if isinstance(loc.fs.protocol, str) else loc.fs.protocol[0]
    return f"{protocol}://" + posixpath.normpath("/" + loc.path).lstrip("/")


def _contains(directory: str, path: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def check_output_location(output: Location, input_dirs: Iterable[Location] = (),
                          input_files: Iterable[Location] = ()) -> None:
    """Raise :class:`StorageError` if ``output`` is, lies inside or contains the directory of an input
    checkpoint, or contains an input file. Real locations are compared (symlinks and ``..`` resolved
    locally, normalized keys remotely), so no spelling of a path lets an output reach an input."""
    out = canonical_path(output)
    for loc in input_dirs:
        directory = canonical_path(loc)
        if _contains(directory, out) or _contains(out, directory):
            raise StorageError(
                f"output {output.url} is or lies inside the directory of input {loc.url}, or contains it: "
                "choose an output outside it (inputs are never modified)"
            )
    for loc in input_files:
        if _contains(out, canonical_path(loc)):
            raise StorageError(
                f"output {output.url} contains the input {loc.url}: choose an output that holds no input "
                "(inputs are never modified)"
            )


def _entries(loc: Location) -> list[str]:
    """Names in the output directory ([] when it does not exist); :class:`StorageError` for a file."""
    if loc.fs.isdir(loc.path):
        return sorted(posixpath.basename(p.rstrip("/")) for p in loc.fs.ls(loc.path, detail=False))
    if loc.fs.isfile(loc.path):
        raise StorageError(f"output {loc.url} is a file, not a directory")
    return []


def _is_leftover(names: list[str], layout: OutputLayout) -> bool:
    """What an interrupted run left: its marker, no manifest (so it never finished), and nothing a run
    does not write (a state file included: a run killed before its manifest has written one)."""
    return INCOMPLETE_MARKER in names and MANIFEST not in names and all(layout.ours(n) for n in names)


def check_output(output: Location, layout: OutputLayout, overwrite: bool = False, held: bool = False) -> list[str]:
    """Raise :class:`StorageError` unless a run can publish at ``output``: a directory that is empty, holds
    an interrupted run's leftovers, or (with ``overwrite``) anything; whose bucket exists; writable; that
    no live run holds (:class:`OutputBusyError`, unless ``held``: the caller holds it). Returns the names
    it holds. Reads no tensor and creates nothing."""
    try:
        names = _entries(output)
        # (an output this process holds is judged when the lock is taken: OutputDir)
        if INCOMPLETE_MARKER in names and not held and output.url not in _HELD:
            refuse_if_held(output.child(INCOMPLETE_MARKER))
        if names and not overwrite and not _is_leftover(names, layout):
            raise StorageError(
                f"output {output.url} is not empty ({len(names)} entries, e.g. {names[0]!r}): choose a new "
                "directory, or pass overwrite=True (--overwrite) to replace a previous warm start"
            )
        if not names:
            _check_writable(output)
    except StorageError:
        raise
    except OSError as exc:
        raise StorageError(f"cannot use output {output.url}: {exc}", is_transient(exc)) from None
    return names


def _check_writable(output: Location) -> None:
    if output.is_local:
        existing = output.path
        while not os.path.isdir(existing):
            parent = os.path.dirname(existing)
            if os.path.exists(existing) or parent == existing:
                raise StorageError(f"output {output.url}: {existing} is not a directory")
            existing = parent
        if not os.access(existing, os.W_OK | os.X_OK):
            raise StorageError(f"output {output.url}: {existing} is not writable")
    elif output.fs.protocol not in ("memory", ("memory",)):
        bucket = output.path.split("/", 1)[0]
        if not output.fs.exists(bucket):
            raise StorageError(f"output {output.url}: bucket {bucket!r} does not exist (warmstart creates no buckets)")


class OutputDir:
    """An output directory being written. Use :meth:`prefix` for the checkpoint, then :meth:`commit`.

    Opening it checks the output (:func:`check_output`), withdraws a previous output (``overwrite``:
    state file and manifest first) or an interrupted run's leftovers, and marks the directory as
    being written. :meth:`abort` leaves the location as it was found (less a withdrawn output).
    With ``keep_parts``, the parts an interrupted sharded run staged stay (its units reuse them).
    """

    def __init__(self, url: str | os.PathLike, layout: OutputLayout, storage_options: dict[str, Any] | None = None,
                 overwrite: bool = False, keep_parts: bool = False):
        self.layout = layout
        self.loc = resolve(url, storage_options)
        self.url = self.loc.url
        self._written: list[Location] = []
        self._created: str | None = None  # the highest local directory this run created
        self._lock: OutputLock | None = None
        self._withdrew = False
        if keep_parts and self.url in _HELD:
            # a sharded run of this process that never committed nor rolled back (lost): its parts are
            # reused, as a dead run's would be, so its hold on the output goes too
            _HELD.pop(self.url).release(remove=False)
        check_output(self.loc, layout, overwrite)  # refused before anything is created
        try:
            if self.loc.is_local and not os.path.isdir(self.loc.path):
                self._created = _makedirs(self.loc.path)
            self._lock = _HELD[self.url] = OutputLock.acquire(self.loc.child(INCOMPLETE_MARKER))
            # what is there now that this run holds the output (another run may have finished since the check)
            names = [n for n in check_output(self.loc, layout, overwrite, held=True) if n != INCOMPLETE_MARKER]
            if keep_parts:
                names = [n for n in names if not n.startswith(PART_PREFIX)]
            if names and self._lock.existed:
                log.warning("output %s holds what an interrupted run left (%s): removing it", self.url,
                            INCOMPLETE_MARKER)
            self._withdraw(names)
        except StorageError:
            self.abort()
            raise
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot prepare output {self.url}: {exc}", is_transient(exc)) from None

    @property
    def created(self) -> str | None:
        """The highest local directory this run created (None: it created none)."""
        return self._created

    @property
    def prefix(self) -> Location:
        return self.loc.child(self.layout.prefix)

    def _withdraw(self, names: list[str]) -> None:
        # The state file and manifest go first so that no reader sees the old checkpoint half-replaced.
        for name in sorted(names, key=lambda n: n not in (self.layout.last, MANIFEST)):
            if (name == MANIFEST or self.layout.ours(name)) and name != INCOMPLETE_MARKER:
                self._withdrew = True
                self.loc.fs.rm(self.loc.child(name).path, recursive=True)

    @classmethod
    def reopen(cls, url: str, layout: OutputLayout, storage_options: dict[str, Any] | None, written: list[str],
               created: str | None = None) -> "OutputDir":
        """An output already prepared by ``OutputDir(url, ...)`` (in another task or process), holding
        the objects named ``written``, its run having created local directory ``created`` (its
        :attr:`created`): to :meth:`commit` or :meth:`abort` it."""
        out = cls.__new__(cls)
        out.layout = layout
        out.loc = resolve(url, storage_options)
        out.url = out.loc.url
        out._created = created
        out._withdrew = True
        out._lock = _HELD.get(out.url)  # held by this process (its prepare step): adopted
        marker = [] if out._lock is not None else [out.loc.child(INCOMPLETE_MARKER)]
        out._written = [*marker, *(out.loc.child(n) for n in written)]
        return out

    def promote(self, staged: str, name: str) -> Location:
        """Rename object ``staged`` of the output to ``name`` (a server-side copy on object stores)."""
        dest = self.loc.child(name)
        self._written.append(dest)
        try:
            self.loc.fs.invalidate_cache(self.loc.path)  # written by other processes since any listing here
            self.loc.fs.mv(self.loc.child(staged).path, dest.path)
        except OSError as exc:
            raise StorageError(f"renaming {staged} to {dest.url} failed: {exc}", is_transient(exc)) from None
        return dest

    def put_file(self, local_path: str, name: str) -> Location:
        """Upload a local file into the output directory (multipart/resumable as fsspec does)."""
        dest = self.loc.child(name)
        self._written.append(dest)
        try:
            self.loc.fs.put_file(local_path, dest.path)
        except OSError as exc:
            raise StorageError(f"uploading {name} to {dest.url} failed: {exc}", is_transient(exc)) from None
        return dest

    def record(self, loc: Location) -> None:
        """Note an object written directly (by a streaming writer) so that :meth:`abort` removes it."""
        self._written.append(loc)

    def _write_text(self, name: str, text: str) -> Location:
        dest = self.loc.child(name)
        self._written.append(dest)
        # Locally, written aside and renamed into place: a reader (TF's latest_checkpoint) never sees a
        # half-written state file. An object store shows an object only once its upload completes.
        # The marker is the exception: what counts is that it exists, from its creation on (a run
        # killed while writing it aside would leave only an unrecognised ".partial" behind).
        aside = self.loc.is_local and name != INCOMPLETE_MARKER
        part = self.loc.child(f".warmstart-{name}.partial") if aside else dest
        try:
            with self.loc.fs.open(part.path, "w") as f:
                f.write(text)
            if part is not dest:
                os.replace(part.path, dest.path)
        except OSError as exc:
            raise StorageError(f"writing {dest.url} failed: {exc}", is_transient(exc)) from None
        return dest

    def commit(self, manifest: dict[str, Any], state_file: bool = True) -> str:
        """Write the state file (unless the output holds no TF checkpoint), then the manifest, then drop
        the marker; returns the manifest URL."""
        if self._lock is not None:
            self._lock.check()  # never publish an output another run has taken over
        if state_file and self.layout.last:
            self._write_text(self.layout.last, self.layout.last_text)
        # Compact: with indent, json uses its pure-Python encoder (seconds for a 20k-variable plan).
        url = self._write_text(MANIFEST, json.dumps(manifest, separators=(",", ":")) + "\n").url
        self.finish()
        return url

    def finish(self) -> None:
        """The output is published (state file and manifest written): drop the marker."""
        marker = self.loc.child(INCOMPLETE_MARKER)
        try:
            if self._lock is not None:
                self._lock.release(remove=True)
            else:
                self.loc.fs.rm(marker.path)
        except OSError as exc:  # published all the same; the next run sees a complete output
            log.warning("could not remove %s: %s", marker.url, exc)
        finally:
            self._let_go()
        self._written.clear()

    def _let_go(self) -> None:
        if self._lock is not None and _HELD.get(self.url) is self._lock:
            del _HELD[self.url]
        self._lock = None

    def abort(self) -> None:
        """Remove everything this run wrote, and the directories it created (best effort: the
        original error is what matters)."""
        for loc in reversed(self._written):
            try:
                if loc.fs.exists(loc.path):
                    loc.fs.rm(loc.path)
            except OSError:
                pass
        touched = bool(self._written) or self._withdrew
        self._written.clear()
        if self._lock is not None:
            # the marker goes last; a dead run's marker this run found beside files it may not touch stays
            try:
                self._lock.release(remove=touched or not self._lock.existed)
            except OSError:
                pass
            finally:
                self._let_go()
        if self._created is not None:
            _remove_empty_dirs(self.loc.path, self._created)
            self._created = None


def _makedirs(path: str) -> str | None:
    """Create local directory ``path`` with its parents; return the highest one created (None if it existed)."""
    highest = None
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        highest, probe = probe, os.path.dirname(probe)
    os.makedirs(path, exist_ok=True)
    return highest


def _remove_empty_dirs(path: str, highest: str) -> None:
    """Remove ``path`` and its parents up to ``highest`` while they are empty."""
    current = os.path.abspath(path)
    while True:
        try:
            os.rmdir(current)  # only an empty directory: anything someone else put there stays
        except OSError:
            return
        if current == highest:
            return
        current = os.path.dirname(current)


def publish_directory(staging: str, output: str, layout: OutputLayout, storage_options: dict[str, Any] | None = None,
                      overwrite: bool = False, input_dirs: Iterable[Location] = (),
                      input_files: Iterable[Location] = ()) -> dict[str, Any]:
    """Upload a finished local output (as :func:`warmstart.transfer` writes it) to ``output``.

    Checkpoint data and index first, then the state file, then the manifest: no reader sees a
    partial output, and a failure removes what was uploaded. ``input_dirs`` and ``input_files`` are
    what the output may not reach (:func:`check_output_location`). Returns ``{"output", "manifest", "files"}``.
    """
    staged = Path(staging)
    if not (staged / MANIFEST).is_file():
        raise StorageError(f"{staging} is not a finished warmstart output (no {MANIFEST})")
    check_output_location(resolve(output, storage_options), input_dirs, input_files)
    out = OutputDir(output, layout, storage_options, overwrite=overwrite)
    # a TF checkpoint's state file, then the manifest (a Keras weights output has no state file)
    last = tuple(n for n in (layout.last, MANIFEST) if n and (staged / n).is_file())
    # Data shards before the index: an index never names bytes that are not there yet.
    first = sorted((p.name for p in staged.iterdir() if p.is_file() and p.name not in last),
                   key=lambda n: (n.endswith(".index"), n))
    try:
        for name in (*first, *last):
            out.put_file(str(staged / name), name)
        out.finish()
    except BaseException:
        out.abort()
        raise
    return {"output": out.url, "manifest": out.loc.child(MANIFEST).url, "files": [*first, *last]}


def refuse_unfinished(directory: Location, what: str) -> None:
    """Raise :class:`InputError` when ``directory`` holds the marker of a run writing it, or killed while it
    wrote it: what is there is no finished output, whatever its files look like."""
    marker = directory.child(INCOMPLETE_MARKER)
    try:
        unfinished = marker.fs.exists(marker.path)
    except OSError as exc:
        raise StorageError(f"cannot access {marker.url}: {exc}", is_transient(exc)) from None
    if unfinished:
        raise InputError(f"{what} is in an output a warmstart run is writing, or was interrupted writing "
                         f"({INCOMPLETE_MARKER} beside it): not a finished output. Wait for that run, or run "
                         "the transfer again")


def read_manifest(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``warmstart.json`` at ``url`` (the manifest itself or its output directory)."""
    loc = resolve(url, storage_options)
    if not loc.path.endswith(MANIFEST):
        loc = loc.child(MANIFEST)
    try:
        return json.loads(read_bytes(loc))
    except json.JSONDecodeError as exc:
        raise CorruptCheckpointError(f"{loc.url}: not a JSON manifest: {exc}") from None
