"""The inputs a plan was made from, each pinned by version: what a transfer of that plan may read.

A plan names every source (``main`` and the named ones), its target, and the files its rules came
from (the rules file, vocabularies, a source's structure, the models, graphs and probes its certificate reads), each with the exact object read (a
directory's checkpoint resolved to its prefix) and the version of every file (see
:func:`warmstart.storage.object_version`). A transfer of the plan reads those objects and refuses to
run, or to publish, when one of them changed; the output may lie in none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["InputRole", "PinnedFile", "PinnedInput", "READ_BY_TRANSFER"]

InputRole = Literal["source", "target", "rules", "vocabulary", "structure", "verification"]
#: The roles whose files a transfer reads again (sources' tensors, the target's template or model); the others
#: were read once, when planning, and what they said is in the plan.
READ_BY_TRANSFER: frozenset[str] = frozenset({"source", "target"})


@dataclass(frozen=True, slots=True)
class PinnedFile:
    """One file of an input and the version planning saw (:func:`warmstart.storage.object_version`)."""

    url: str
    version: dict[str, Any] | None  # None: not there when the plan was made

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "version": None if self.version is None else dict(self.version)}


@dataclass(frozen=True, slots=True)
class PinnedInput:
    """An input of a plan: its ``role``, its ``name`` (a source's name, else the role), what the caller gave
    (``given``), the exact object it resolved to (``url``: a checkpoint's prefix, a file), its ``kind``,
    the versions of its files, and for a checkpoint its ``directory`` (an output may not be, lie in or
    contain it). ``pinned`` is False for what has no file version: a builder (code) or a live object."""

    role: InputRole
    name: str
    given: str
    url: str
    kind: str
    files: tuple[PinnedFile, ...] = ()
    directory: str | None = None
    pinned: bool = True

    @property
    def label(self) -> str:
        """How a message names it: ``source 'main' (s3://b/run/model.ckpt-7)``."""
        who = f"{self.role} {self.name!r}" if self.role == "source" else self.role
        return f"{who} ({self.url})"

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "name": self.name, "given": self.given, "url": self.url, "kind": self.kind,
                "files": [f.to_json() for f in self.files], "directory": self.directory, "pinned": self.pinned}
