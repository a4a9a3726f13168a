"""Variable tables of Keras weights files (``.weights.h5``, a ``.keras`` archive's weights, sharded
``.weights.json``, legacy ``.h5``), named as :mod:`.keras_names` names every Keras variable.

A file with the model's configuration (a ``.keras`` archive; a legacy model file) names each variable by
Keras' ``variable.path`` (``enc2/kernel``): the layer names Keras recorded in the file, the variables'
own names from the configuration (:mod:`.keras_config`; a model with layers that table does not describe
is built by Keras, without its weights, to ask it). A bare ``.weights.h5`` names them ``enc2/vars/0``
(with the likely ``enc2/kernel`` as an alias). A legacy file's weight names are its names.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from ..errors import TargetError
from ..formats import KerasWeightsReader
from .keras_config import guess_roles, variables_from_config
from .keras_names import KerasName, Place, Step, containers, name_places, place_of_group
from .table import Variable, VariableTable

__all__ = ["table_from_keras_weights", "variable_of"]


def table_from_keras_weights(reader: KerasWeightsReader) -> VariableTable:
    """The variables of a Keras weights file, keyed by their path in the file (see the module's docstring)."""
    if reader.legacy is not None:
        return VariableTable.of(_legacy(reader), reader.url, "keras-weights")
    model = {k: r for k, r in reader.records.items() if not k.startswith("optimizer/")}
    roles = _roles(reader, {k.rsplit("/vars/", 1)[0] for k in model})
    models = containers(reader.groups)
    places = {k: _place(k, reader.groups, roles, models) for k in model}
    names = name_places(places)
    counts = Counter(k.rpartition("/vars/")[0] for k in model)
    variables = [variable_of(names[k], r.shape, r.dtype, k, guessed=_guess(places[k], counts))
                 if k in names else Variable(k, r.shape, r.dtype, k, initial=k)
                 for k, r in reader.records.items()]
    return VariableTable.of(variables, reader.url, "keras-weights")


def variable_of(name: KerasName, shape, dtype: str, key: str, **more: Any) -> Variable:
    """A table entry of a Keras variable with all its names."""
    return Variable(name.name, tuple(shape), dtype, key, initial=more.pop("initial", key),
                    weights_path=name.weights_path, structure=name.structure, anchor=name.anchor,
                    generated=name.generated, positional=name.generated, **more)


def _place(key: str, groups: dict[str, str], roles: dict[str, tuple[str, ...]] | None,
           models: frozenset[str]) -> Place:
    group, _, index = key.rpartition("/vars/")
    own = (roles or {}).get(group)
    i = int(index)
    return place_of_group(group, groups, i, own[i] if own is not None and i < len(own) else None, models)


def _guess(place: Place, counts: Counter[str]) -> tuple[str, ...]:
    """For a variable without its own name: the name its layer's class likely gives it (an alias)."""
    if place.role is not None or any(s.name is None for s in place.steps):
        return ()
    group = "/".join(s.segment for s in place.steps)
    roles = guess_roles(group, counts[group])
    if roles is None:
        return ()
    chain = [s.name for s in place.steps if not s.container]
    return ("/".join([*chain, roles[place.index]]),)  # type: ignore[list-item]


def _roles(reader: KerasWeightsReader, groups: set[str]) -> dict[str, tuple[str, ...]] | None:
    """Each layer group's variables' own names, from the file's configuration (None without one, or when
    it does not describe these groups)."""
    if reader.config is None:
        return None
    layers = variables_from_config(reader.config)
    found = None if layers is None else {layer.group: layer.roles for layer in layers}
    return found if found is not None and set(found) == groups else _roles_from_keras(reader)


def _roles_from_keras(reader: KerasWeightsReader) -> dict[str, tuple[str, ...]] | None:
    """The configuration names layers only Keras knows (custom or LoRA layers), or describes other groups
    than the file holds: the model is built from it with no weight allocated (:mod:`.keras_files`) and
    asked; None when it cannot be built so."""
    from .keras_files import built_without_weights
    from .keras_walk import saved_places

    try:
        model = built_without_weights(reader.config, reader.url)
    except (TargetError, RecursionError):
        return None
    places = saved_places(model) if model is not None else None
    if places is None:
        return None
    found: dict[str, list[str | None]] = defaultdict(list)
    for place in sorted(places.values(), key=lambda p: p.index):
        found["/".join(s.segment for s in place.steps)].append(place.role)
    return {group: tuple(r or "" for r in roles) for group, roles in found.items()}


def _legacy(reader: KerasWeightsReader) -> list[Variable]:
    """A legacy file's variables by their weight names (Keras' ``variable.path`` when it wrote them), with
    Keras' structure keys where the file's configuration gives the layers' classes."""
    assert reader.legacy is not None
    names = _legacy_names(reader)
    places = _weight_name_places(reader.legacy)
    return [variable_of(names[k], r.shape, r.dtype, k, full_name=reader.legacy[k][1])
            if k in names else Variable(reader.legacy[k][1], r.shape, r.dtype, k, initial=k,
                                        weights_path=places.get(k))
            for k, r in reader.records.items()]


def _weight_name_places(legacy: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Without a configuration that describes it, a legacy weight's place by layer names (``enc1/vars/0``):
    Keras lists a layer's weights in the order it saves them, so a weight is the N-th of its layer's names."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    places = {}
    for key, (layer, weight) in legacy.items():
        chain = weight.rpartition("/")[0]
        if chain:
            places[key] = f"{chain}/vars/{counts[layer, chain]}"
            counts[layer, chain] += 1
    return places


def _legacy_names(reader: KerasWeightsReader) -> dict[str, KerasName]:
    """The names of a legacy file's variables whose layer the configuration describes: its layers' variables
    in the order Keras lists their weights, matched to each layer's weight names (the same own names)."""
    layers = variables_from_config(reader.config) if reader.config is not None else None
    if layers is None:
        return {}
    root = reader.config.get("config", {}).get("name")  # type: ignore[union-attr]
    by_top: dict[str | None, list[tuple[str, int, str]]] = defaultdict(list)
    for layer in layers:
        by_top[layer.top].extend((layer.group, i, role) for i, role in enumerate(layer.roles))
    weights: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key, (layer_name, weight) in reader.legacy.items():  # type: ignore[union-attr]
        weights[layer_name].append((key, weight))
    places = {}
    for top, found in weights.items():
        expected = by_top.get(top, [])
        if len(expected) != len(found) or any(not w.endswith("/" + role) for (_, w), (_, _, role) in
                                              zip(found, expected)):
            continue  # a layer this configuration does not describe as the file does: its weight names only
        for (key, weight), (group, index, role) in zip(found, expected):
            place = _legacy_place(top, group, index, role, weight, root)
            if place is not None:
                places[key] = place
    return name_places(places)


def _legacy_place(top: str, group: str, index: int, role: str, weight: str, root: Any) -> Place | None:
    """The place of a legacy weight: Keras' structure steps to its group, named by the weight's name (the
    model-level layer's name for the models on the way; the root model's name, which a Sequential's
    weight names begin with, dropped); None when the two do not line up."""
    segments = _segments(group)
    models = [i + 1 < len(segments) and segments[i + 1].startswith("layers/") for i in range(len(segments))]
    names = weight.split("/")[:-1]
    if names and names[0] == root and len(names) == models.count(False) + 1:
        names = names[1:]
    steps = []
    for i, segment in enumerate(segments):
        if models[i]:  # a model: its layers are listed below it (a nested Sequential's name begins its weights')
            steps.append(Step(segment, top if i == 0 else None, True))
            if i == 0 and names[:1] == [top] and len(names) > models.count(False):
                names.pop(0)
        elif names:
            steps.append(Step(segment, names.pop(0)))
        else:
            return None
    return Place(tuple(steps), index, role) if not names else None


def _segments(group: str) -> list[str]:
    """Keras' steps of a structure path: ``layers/x`` for an element of a model's list, else one attribute."""
    parts, out, i = group.split("/"), [], 0
    while i < len(parts):
        if parts[i] == "layers" and i + 1 < len(parts):
            out.append(f"layers/{parts[i + 1]}")
            i += 2
        else:
            out.append(parts[i])
            i += 1
    return out
