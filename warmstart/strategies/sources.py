"""The readers of a plan's sources, by name: each entry is read from the source the plan says fills it.

A plan of one source (``main``) takes one reader as before; a plan of several named sources (the rules'
``sources:`` and ``fill_from:``) takes a :class:`SourceReaders`, and every strategy reads each entry through
:meth:`SourceReaders.reader_for` (never from another source's reader by the same key).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..planning import MAIN_SOURCE, Plan, PlanEntry

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SourceReaders"]


class SourceReaders:
    """Readers (a TF checkpoint's :class:`BundleReader`, a :class:`KerasWeightsReader`) by source name."""

    def __init__(self, readers: Mapping[str, Any]):
        if MAIN_SOURCE not in readers:
            raise UsageError(f"no reader for the source {MAIN_SOURCE!r} (the SOURCE argument)")
        self.readers = dict(readers)

    @classmethod
    def of(cls, source: Any, plan: Plan | None = None) -> SourceReaders:
        """``source`` as readers by name: one reader is ``main``'s. Raises :class:`UsageError` when a source
        the plan reads from has no reader."""
        readers = source if isinstance(source, SourceReaders) else cls(
            source if isinstance(source, Mapping) else {MAIN_SOURCE: source})
        needed = {e.from_source or MAIN_SOURCE for e in plan.transferred} if plan is not None else set()
        missing = sorted(needed - set(readers.readers))
        if missing:
            raise UsageError(f"the plan reads from source {missing[0]!r}, but no reader of it was given")
        return readers

    @property
    def main(self) -> Any:
        return self.readers[MAIN_SOURCE]

    @property
    def several(self) -> bool:
        return len(self.readers) > 1

    def items(self) -> Iterable[tuple[str, Any]]:
        return self.readers.items()

    def reader_for(self, entry: PlanEntry) -> Any:
        return self.readers[entry.from_source or MAIN_SOURCE]

    def read(self, entry: PlanEntry) -> np.ndarray:
        """The whole source value of ``entry``, checked, from its own source."""
        return self.reader_for(entry).read(entry.source_key)

    def stored_bytes(self, entry: PlanEntry) -> int:
        return self.reader_for(entry).records[entry.source_key].stored_bytes

    def url_of(self, entry: PlanEntry) -> str:
        return self.reader_for(entry).url

    def by_source(self, entries: Iterable[PlanEntry]) -> dict[str, list[PlanEntry]]:
        """``entries`` grouped by the name of their source, in the order of the readers."""
        groups: dict[str, list[PlanEntry]] = {name: [] for name in self.readers}
        for e in entries:
            groups[e.from_source or MAIN_SOURCE].append(e)
        return {name: group for name, group in groups.items() if group}
