"""Which layers a certificate compares: the units of a Keras model, and whether the plan filled each from one
source layer.

A unit is a layer with variables (its own or its sub-layers'): a Dense, a MultiHeadAttention, a nested model,
the model itself. Where several units hold the same variables (an LSTM and its cell, a wrapper and its layer),
the outermost is the one called. A target unit is compared when the plan filled every one of its variables by a
copy or cast from one source, and the source has one unit holding exactly those variables; otherwise it is
listed with the reason. Keras objects are only inspected here, never called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..planning import DIRECT, MAIN_SOURCE, PlanEntry
from ..planning.blocks import Blocks
from ..planning.patterns import compile_pattern
from ..tables import has_list_index
from .calls import flatten_layers

__all__ = ["Unit", "model_units", "unit_problem", "source_unit"]


@dataclass(frozen=True)
class Unit:
    """A layer with variables: its name (where its variables' names put it), the layer, the plan names of its
    variables (in model order) and its depth in the model."""

    name: str
    layer: Any
    variables: tuple[str, ...]
    depth: int
    complete: bool = True  # every weight of the layer has a name in the plan's table

    @property
    def layer_class(self) -> str:
        return type(self.layer).__name__


def model_units(model: Any, names: Mapping[int, str], order: Mapping[str, int]) -> list[Unit]:
    """The units of ``model`` (``names``: ``id`` of each variable -> its plan name; ``order``: plan name -> its place
    in the plan), in model order, each after the units inside it; the outermost of units holding the same
    variables."""
    found: dict[frozenset[str], Unit] = {}
    place: dict[frozenset[str], int] = {}
    for i, (layer, depth) in enumerate(flatten_layers(model)):
        weights = list(getattr(layer, "weights", ()))
        variables = sorted({names[id(v)] for v in weights if id(v) in names}, key=lambda n: order.get(n, 1 << 30))
        if not variables:
            continue
        key = frozenset(variables)
        place.setdefault(key, i)  # where the innermost of them computes: after what it holds
        if key not in found or depth < found[key].depth:
            found[key] = Unit(_unit_name(layer, variables), layer, tuple(variables), depth,
                              all(id(v) in names for v in weights))
    return sorted(found.values(), key=lambda u: place[frozenset(u.variables)])


def _unit_name(layer: Any, variables: Sequence[str]) -> str:
    """A model's name (no variable's name holds it); a layer's path where its variables' names begin with it
    (``encoder/attention``), else the directory they share, else its name."""
    import keras

    if isinstance(layer, keras.Model):
        return layer.name
    dirs = [v.rsplit("/", 1)[0] if "/" in v else "" for v in variables]
    parts = [p.split("/") for p in dirs]
    common = []
    for column in zip(*parts):
        if len(set(column)) != 1:
            break
        common.append(column[0])
    shared, path = "/".join(common), getattr(layer, "path", None)
    if isinstance(path, str) and path and (shared == path or shared.startswith(path + "/") or has_list_index(shared)):
        return path  # (a TF2 checkpoint's object path names no layer: the layer's own path does)
    return shared or layer.name


def unit_problem(unit: Unit, entries: Mapping[str, PlanEntry], exclude: Sequence[str]) -> str | None:
    """Why ``unit`` cannot be compared with a source layer (in words), or None when the plan filled all its
    variables by copy or cast from one source."""
    for i, pattern in enumerate(exclude):
        if compile_pattern(pattern).fullmatch(unit.name):
            return f"excluded by the rules (verify.exclude[{i}] {pattern!r})"
    if getattr(unit.layer, "stateful", False):
        return "stateful: each call changes its state"
    if not unit.complete:
        return "some of its weights have no name in the plan's target table"
    rows = [entries[v] for v in unit.variables if v in entries]
    if len(rows) < len(unit.variables):
        return "some of its variables are not in the plan"
    kept = [e for e in rows if e.action in ("init", "skip")]
    if len(kept) == len(rows):
        word = "new: keeps its initial value" if all(e.action == "init" for e in kept) else "not copied"
        return f"{word} ({kept[0].reason})"
    if kept:
        return (f"partly copied: {len(rows) - len(kept)} of {len(rows)} variables ({kept[0].target!r}: "
                f"{kept[0].action}, {kept[0].reason})")
    remapped = [e for e in rows if e.action == "remap"]
    if remapped:
        if isinstance(remapped[0].remap, Blocks):
            return (f"transformed (block ops on {remapped[0].target!r}): its values are made, not copied; declare an "
                    "output pair under verify: to compare what it computes")
        return (f"remapped ({remapped[0].target!r}: {remapped[0].remap.kind if remapped[0].remap else 'remap'}): its "
                "rows that have a source are compared as rows")
    if any(e.action not in DIRECT for e in rows):
        return "not filled from the source"
    if len({e.from_source or MAIN_SOURCE for e in rows}) > 1:
        return "filled from several sources"
    return None


def source_unit(variables: Sequence[str], entries: Mapping[str, PlanEntry], units: Sequence[Unit]) -> Unit | str:
    """The source unit holding exactly the variables the target ``variables`` were filled from, or why there is
    none."""
    wanted = frozenset(entries[v].source for v in variables)
    for candidate in units:
        if frozenset(candidate.variables) == wanted:
            return candidate if candidate.complete else \
                f"its source layer {candidate.name!r} has weights the source's table does not name"
    return "filled from several source layers, or from part of one (no source layer holds exactly its sources)"
