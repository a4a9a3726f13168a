"""How a Keras variable is named, whatever holds it: a ``.keras`` file, a weights file, a live model.

Keras' saving walk reaches each layer through a path of *steps* (``layers/dense_1``, then ``cell``...) and
records each layer's own name; a variable is its layer's ``vars/N``. From that walk every variable gets:

- ``name``: Keras 3's ``variable.path``, built from the user's layer names (``encoder/query/kernel``):
  the names of the layers on the way (not those of Functional or Sequential models, whose layers
  Keras builds outside their scope) and the variable's own name, where known (a bare weights file
  knows only its number: ``encoder/query/vars/0``);
- ``weights_path``: the same layer names with ``vars/N``, what a weights file records (``enc1/vars/0``);
- ``structure``: Keras' own key, the file path ``load_weights`` matches by (``layers/dense_1/vars/0``),
  which counts layers by class: an inserted layer shifts it;
- ``generated`` and ``anchor``: a layer name Keras generated (its class in snake case, with a count:
  ``dense_7``) depends on how many layers were built before, so it is no identity. Such a variable is
  known by its ``anchor``: each layer on the way by its name where the user named it, by Keras' structure
  step where Keras did (``layers/dense_1/vars/0`` when no layer on the way is named, ``td/layer/vars/0``
  for a named wrapper's unnamed layer). A match by anchor rests on position, as ``load_weights`` does.

Every producer (:mod:`.table` for weights files, :mod:`.tf_objects` for live models) describes its
variables as :class:`Place` s and names them here, so the same model gets the same names from any of
them. Pure: no Keras import.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Step", "Place", "KerasName", "name_places", "snake_case", "is_generated", "place_of_group", "counted", "containers"]


@dataclass(frozen=True, slots=True)
class Step:
    """One step of Keras' saving walk: the path from the previous step (``layers/dense_1``, ``cell``), the
    layer's own name (None where the file recorded none), and whether it is a Functional or Sequential
    model (a container: its layers' variable paths do not begin with its name)."""

    segment: str
    name: str | None
    container: bool = False


@dataclass(frozen=True, slots=True)
class Place:
    """Where one variable is: the steps to its layer, its number among the layer's variables (``vars/N``)
    and its own name (``kernel``) where known."""

    steps: tuple[Step, ...]
    index: int
    role: str | None = None

    @property
    def structure(self) -> str:
        return "/".join([*(s.segment for s in self.steps), "vars", str(self.index)])


@dataclass(frozen=True, slots=True)
class KerasName:
    """The names of one Keras variable (see the module's docstring)."""

    name: str
    weights_path: str | None
    structure: str
    anchor: str | None
    generated: bool


def snake_case(class_name: str) -> str:
    """Keras' ``to_snake_case``: ``BatchNormalization`` -> ``batch_normalization``, ``PReLU`` -> ``p_re_lu``."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def counted(name: str, used: dict[str, int]) -> str:
    """Keras' count of a name in a list (``_get_unique_name``): ``dense``, ``dense_1``, ..."""
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def _base(segment: str) -> str:
    """The last component of a step without a count: ``layers/dense_3`` -> ``dense``, ``cell`` -> ``cell``."""
    return re.sub(r"_\d+$", "", segment.rsplit("/", 1)[-1])


def is_generated(step: Step) -> bool:
    """True when the layer's name is what Keras makes up for it: the name its step is counted by
    (its class in snake case, for a layer in a model's list), with an optional count (``dense_7``)."""
    return step.name is None or re.fullmatch(re.escape(_base(step.segment)) + r"(_\d+)?", step.name) is not None


def containers(names: Iterable[str]) -> frozenset[str]:
    """The groups (of those that record a layer name) that hold a ``layers`` list: Functional and Sequential
    models (``layers/functional`` when ``layers/functional/layers/dense`` is a group)."""
    return frozenset(g.rsplit("/layers/", 1)[0] for g in names if "/layers/" in g)


def place_of_group(group: str, names: Mapping[str, str], index: int, role: str | None = None,
                   models: frozenset[str] | None = None) -> Place:
    """The place of variable ``index`` of the layer whose group in a weights file is ``group``
    (``layers/functional/layers/dense``), from the layer names recorded in the file (``names``: group ->
    name): every group on the way that records a name is a step; one with a ``layers`` list is a container
    (``models``: :func:`containers` of ``names``, computed once for many calls)."""
    models = containers(names) if models is None else models
    parts = group.split("/") if group else []
    steps, start = [], 0
    for end in range(1, len(parts) + 1):
        prefix = "/".join(parts[:end])
        if prefix in names or end == len(parts):
            steps.append(Step("/".join(parts[start:end]), names.get(prefix), prefix in models))
            start = end
    return Place(tuple(steps), index, role)


def name_places(places: Mapping[str, Place]) -> dict[str, KerasName]:
    """The names of every variable of one model (``places`` by any key), made unique: where two layers
    would get the same names, the names of the models holding them are kept; where they still collide,
    Keras' structure path is the name."""
    chains = {key: _chain(p.steps, containers=False) for key, p in places.items()}
    for containers in (True, None):
        layers = defaultdict(set)
        for key, p in places.items():
            layers[chains[key]].add(tuple(s.segment for s in p.steps))
        for key, p in places.items():
            if chains[key] is not None and len(layers[chains[key]]) > 1:
                chains[key] = None if containers is None else _chain(p.steps, containers)
    return {key: _named(p, chains[key]) for key, p in places.items()}


def _chain(steps: tuple[Step, ...], containers: bool) -> tuple[str, ...] | None:
    """The layer names on the way (containers' too when ``containers``); None when one is not recorded."""
    kept = [s for s in steps if containers or not s.container]
    if any(s.name is None for s in kept):
        return None
    return tuple(s.name for s in kept)  # type: ignore[misc]


def _named(p: Place, chain: tuple[str, ...] | None) -> KerasName:
    structure = p.structure
    if chain is None:  # no names recorded: the file's own path, by position
        return KerasName(structure, None, structure, structure, True)
    weights_path = "/".join([*chain, "vars", str(p.index)])
    name = "/".join([*chain, p.role]) if p.role else weights_path
    with_containers = len(chain) == len(p.steps)  # the models' names kept: they are identity too, or not
    generated = any(is_generated(s) for s in p.steps if with_containers or not s.container)
    return KerasName(name, weights_path, structure, _anchor(p) if generated else None, generated)


def _anchor(p: Place) -> str:
    """Each layer by its name where the user named it, by Keras' structure step where Keras did."""
    parts = [s.segment if s.name is None or is_generated(s) else s.name for s in p.steps]
    return "/".join([*parts, "vars", str(p.index)])
