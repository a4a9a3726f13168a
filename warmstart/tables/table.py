"""Variable tables: name -> (shape, dtype, where it lives), for anything that holds variables."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import CorruptCheckpointError
from ..formats import dtypes
from ..formats.bundle import OBJECT_GRAPH_KEY, VALUE_SUFFIX, BundleReader, decode_object_graph, preferred_paths

__all__ = ["Variable", "VariableTable", "TableKind", "read_table", "table_from_bundle"]

TableKind = Literal["tf1-checkpoint", "tf2-checkpoint", "tf1-graph", "keras", "module", "signature"]


@dataclass(frozen=True, slots=True)
class Variable:
    """One variable: the name rules match on, its shape and dtype, and where it lives.

    ``key`` is where the value is stored: the checkpoint key, the graph variable name or the
    Keras variable path. ``initial`` says where the variable's initial value comes from
    (``None`` when the table carries none, as a signature file).
    ``shape`` entries are ``None`` where a graph leaves a dimension unknown.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    key: str
    initial: str | None = None
    partitions: int = 0

    @property
    def num_elements(self) -> int | None:
        if any(d is None for d in self.shape):
            return None
        return math.prod(self.shape)  # type: ignore[arg-type]

    @property
    def nbytes(self) -> int | None:
        size = dtypes.by_name(self.dtype).itemsize
        n = self.num_elements
        return None if size is None or n is None else n * size

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.key != self.name:
            out["key"] = self.key
        return out


@dataclass(frozen=True)
class VariableTable(Mapping[str, Variable]):
    """An immutable, name-sorted table of variables, with where it came from."""

    variables: tuple[Variable, ...]
    origin: str
    kind: TableKind
    _by_name: dict[str, Variable] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        by_name: dict[str, Variable] = {}
        for v in self.variables:
            if v.name in by_name:
                raise CorruptCheckpointError(f"{self.origin}: two variables are named {v.name!r}")
            by_name[v.name] = v
        object.__setattr__(self, "variables", tuple(sorted(self.variables, key=lambda v: v.name)))
        object.__setattr__(self, "_by_name", by_name)

    @classmethod
    def of(cls, variables: Iterable[Variable], origin: str, kind: TableKind) -> "VariableTable":
        return cls(tuple(variables), origin, kind)

    def __getitem__(self, name: str) -> Variable:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return (v.name for v in self.variables)

    def __len__(self) -> int:
        return len(self.variables)

    @property
    def num_elements(self) -> int:
        return sum(v.num_elements or 0 for v in self.variables)

    def to_json(self) -> dict[str, Any]:
        """The signature document that ``warmstart signature`` writes and signature targets read."""
        return {
            "format": "warmstart.signature",
            "version": 1,
            "origin": self.origin,
            "kind": self.kind,
            "variables": [v.to_json() for v in self.variables],
        }


def read_table(url: str, storage_options: dict[str, Any] | None = None) -> VariableTable:
    """The variable table of the checkpoint at ``url`` (prefix or directory); reads only its index
    (and, for TF2 checkpoints, the small object-graph tensor)."""
    return table_from_bundle(BundleReader(url, storage_options))


def table_from_bundle(reader: BundleReader) -> VariableTable:
    records = reader.records
    names = _object_names(reader) if OBJECT_GRAPH_KEY in records else {}
    kind: TableKind = "tf2-checkpoint" if OBJECT_GRAPH_KEY in records else "tf1-checkpoint"
    variables = []
    for key, rec in records.items():
        if key == OBJECT_GRAPH_KEY:
            continue
        name = names.get(key) or (key[: -len(VALUE_SUFFIX)] if key.endswith(VALUE_SUFFIX) else key)
        variables.append(Variable(name, rec.shape, rec.dtype, key, initial=key, partitions=len(rec.slices)))
    return VariableTable.of(variables, reader.url, kind)


def _object_names(reader: BundleReader) -> dict[str, str]:
    """checkpoint key -> preferred object path, from the checkpoint's object graph."""
    raw = reader.read(OBJECT_GRAPH_KEY)
    try:
        nodes = decode_object_graph(raw.item() if hasattr(raw, "item") else raw)
    except ValueError as exc:
        raise CorruptCheckpointError(f"{reader.url}: cannot decode its object graph: {exc}") from None
    if not nodes:
        return {}
    n = len(nodes)
    paths = preferred_paths(0, lambda i: ((name, c) for c, name in nodes[i].children if 0 <= c < n))
    names = {}
    for node_id, path in paths.items():
        for attr, key in nodes[node_id].attributes:
            names[key] = path if attr == "VARIABLE_VALUE" else f"{path}/.ATTRIBUTES/{attr}"
    return names
