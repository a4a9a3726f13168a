"""Variable tables of live trackables (Keras 3 models, ``tf.Module``): what ``tf.train.Checkpoint(model=obj)``
would save, named by the walk :func:`warmstart.tables.read_table` runs over a checkpoint's object graph
and keyed by the checkpoint key TF itself would write. TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import TargetError
from ..formats.bundle import VALUE_SUFFIX, escape, preferred_paths
from .table import Variable, VariableTable, has_list_index
from .tf_graphs import dtype_name

__all__ = ["TrackableKind", "table_from_trackable", "trackable_variables", "stateful_layers"]


TrackableKind = Literal["keras", "module"]


def table_from_trackable(obj: Any, origin: str | None = None, kind: TrackableKind | None = None) -> VariableTable:
    """The variables ``tf.train.Checkpoint(model=obj).save(...)`` would write, named as
    :func:`warmstart.tables.read_table` names them in that checkpoint (``model/...``).

    ``kind`` defaults to ``"keras"`` for Keras layers and models, ``"module"`` otherwise.
    Raises :class:`TargetError` when ``obj`` is an unbuilt Keras model or a variable has no
    usable dtype or rank.
    """
    import keras

    is_keras = isinstance(obj, keras.Layer)
    if is_keras and not obj.built:
        raise TargetError(
            f"Keras model {obj.name!r} is not built and has no variables yet: start it with keras.Input(...) "
            "or call it once on data before using it as a target"
        )
    kind = kind or ("keras" if is_keras else "module")
    origin = origin or _live_origin(obj, kind)
    variables = [_trackable_variable(found, origin) for found in _walk_trackable(obj)]
    return VariableTable.of(variables, origin, kind)


def trackable_variables(obj: Any) -> dict[str, Any]:
    """The live variables of a trackable (Keras model or layer, ``tf.Module``) by the names
    :func:`table_from_trackable` gives them: the same walk, so a plan's target names find their
    variables. Values are ``tf.Variable`` or Keras variables."""
    return {found.name: found.variable for found in _walk_trackable(obj)}


def stateful_layers(obj: Any) -> list[Any]:
    """The layers below (and including) ``obj`` that derive state from their variables: those with
    Keras' ``finalize_state`` hook (``Normalization`` computes its mean and variance tensors there).
    Keras runs the hook only in its own loading path; whoever assigns variables must run it too."""
    import tensorflow as tf

    objects, _ = _live_object_graph(tf.train.Checkpoint(model=obj))
    return [o for o in objects.values() if callable(getattr(o, "finalize_state", None))]


@dataclass(frozen=True)
class _Found:
    name: str
    key: str  # the checkpoint key tf.train.Checkpoint(model=obj) writes
    variable: Any
    object_path: str | None  # when the name is the Keras path
    positional: bool
    weights_path: str | None = None


def _walk_trackable(obj: Any) -> list[_Found]:
    """Every variable ``tf.train.Checkpoint(model=obj)`` saves. Keras variables are named by their
    layer names (``variable.path``: ``encoder/dense/kernel``), with the object path as alias; other
    variables (``tf.Module``, or Keras paths that are not unique) by object path (``model/...``)."""
    import tensorflow as tf

    checkpoint = tf.train.Checkpoint(model=obj)
    objects, edges = _live_object_graph(checkpoint)
    root = id(checkpoint)
    keys = _first_found_paths(root, edges)
    found = [(name, keys[node] + VALUE_SUFFIX, objects[node])
             for node, name in preferred_paths(root, lambda node: edges[node]).items()
             if _is_saved_variable(objects[node])]
    paths = _keras_paths(obj, [variable for _, _, variable in found])
    if paths is None:
        return [_Found(name, key, variable, None, has_list_index(name)) for name, key, variable in found]
    counted = _in_counted_layers(objects.values(), obj)
    places = _places_in_layers(objects.values())
    return [_Found(path, key, variable, name, id(variable) in counted, _weights_path(path, places.get(id(variable))))
            if path is not None else _Found(name, key, variable, None, has_list_index(name))
            for path, (name, key, variable) in zip(paths, found)]


def _places_in_layers(objects: Iterable[Any]) -> dict[int, int]:
    """``id`` of each variable -> its index among its layer's own variables, as the layer saves them
    into a Keras weights file (``<layer>/vars/<index>``), asked through the public
    ``save_own_variables`` hook with a recording store (no value is copied)."""
    import keras

    places: dict[int, int] = {}
    for layer in objects:
        if isinstance(layer, keras.Layer):
            store: dict[str, Any] = {}
            layer.save_own_variables(store)
            places.update((id(v), int(k)) for k, v in store.items() if k.isdigit())
    return places


def _weights_path(path: str, index: int | None) -> str | None:
    """``enc1/kernel`` with index 0 -> ``enc1/vars/0``: where a Keras weights file keeps it, by layer names."""
    if index is None or "/" not in path:
        return None
    return f"{path.rsplit('/', 1)[0]}/vars/{index}"


def _keras_paths(root: Any, variables: list[Any]) -> list[str | None] | None:
    """Keras' ``variable.path`` of each of the model's own weights (None for the rest: optimizer
    state and the like keep their object paths, which the default excludes know), without the root
    model's name (a subclassed model's paths begin with it, and it is often counted: ``my_model_1``).
    None when ``root`` is no Keras layer or the paths are not distinct."""
    weights = {id(w) for w in getattr(root, "weights", ())}
    paths = [getattr(v, "path", None) if id(v) in weights else None for v in variables]
    named = [p for p in paths if p is not None]
    if not named or len(set(named)) != len(named):
        return None
    own = f"{getattr(root, 'name', '')}/"
    if all(p.startswith(own) for p in named):
        paths = [None if p is None else p[len(own):] for p in paths]
    return paths


def _in_counted_layers(objects: Iterable[Any], root: Any) -> set[int]:
    """``id`` of every variable of a layer (below ``root``) whose name Keras made up by counting
    (``dense``, ``dense_3``): such a name depends on how many layers of that class were created before."""
    import keras

    counted: set[int] = set()
    for named in objects:
        if named is root or not _counted_name(named):
            continue
        if isinstance(named, keras.Layer):
            counted.update(id(v) for v in named.weights)
        elif isinstance(named, keras.random.SeedGenerator):  # a Dropout's seed state
            counted.add(id(named.state))
    return counted


def _counted_name(obj: Any) -> bool:
    """True when ``obj.name`` is its class name in snake case, possibly with a count (``conv2d_3``)."""
    name = getattr(obj, "name", None)
    if not isinstance(name, str):
        return False
    snake = re.sub(r"([a-z])([A-Z])", r"\1_\2", re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", type(obj).__name__)).lower()
    return re.fullmatch(re.escape(snake) + r"(_\d+)?", name) is not None


def _live_object_graph(root: Any) -> tuple[dict[int, Any], dict[int, list[tuple[str, int]]]]:
    """Every object reachable from ``root`` (by ``id``) and its children in TF's serialization order.

    Objects are keyed by ``id`` because variables are unhashable; ``objects`` keeps them alive.
    The Checkpoint's own ``save_counter`` is left out: it belongs to the checkpoint, not the model.
    """
    import tensorflow as tf

    view = tf.train.TrackableView(root)
    objects: dict[int, Any] = {id(root): root}
    edges: dict[int, list[tuple[str, int]]] = {}
    queue = deque([id(root)])
    while queue:
        node = queue.popleft()
        edges[node] = []
        for local, child in view.children(objects[node]).items():
            if node == id(root) and local == "save_counter":
                continue
            edges[node].append((local, id(child)))
            if id(child) not in objects:
                objects[id(child)] = child
                queue.append(id(child))
    return objects, edges


def _first_found_paths(root: int, edges: dict[int, list[tuple[str, int]]]) -> dict[int, str]:
    """Each object's path in a plain breadth-first walk: the prefix of the checkpoint key TF writes."""
    paths = {root: ""}
    queue = deque([root])
    while queue:
        node = queue.popleft()
        for local, child in edges[node]:
            if child not in paths:
                paths[child] = f"{paths[node]}/{escape(local)}" if paths[node] else escape(local)
                queue.append(child)
    return paths


def _is_saved_variable(obj: Any) -> bool:
    """True for the objects a checkpoint saves a VARIABLE_VALUE for: ``tf.Variable`` and Keras 3
    variables (which are not ``tf.Variable`` subclasses; they wrap one and serialize its value)."""
    import keras
    import tensorflow as tf

    return isinstance(obj, (tf.Variable, keras.Variable))


def _trackable_variable(found: _Found, origin: str) -> Variable:
    """A table entry for a live ``tf.Variable`` or Keras variable; raises :class:`TargetError` for an
    unknown dtype or a shape of unknown rank."""
    import tensorflow as tf

    what = f"{origin}: variable {found.name!r}"
    dtype = dtype_name(tf.as_dtype(found.variable.dtype).as_datatype_enum, what)
    shape = tf.TensorShape(found.variable.shape)
    if shape.rank is None:
        raise TargetError(f"{what} has a shape of unknown rank: give the variable a shape (at least its rank)")
    return Variable(found.name, tuple(shape.as_list()), dtype, key=found.key, initial=f"current value in {origin}",
                    object_path=found.object_path, weights_path=found.weights_path,
                    positional=found.positional)


def _live_origin(obj: Any, kind: str) -> str:
    if kind == "keras":
        return f"keras:{obj.name}"
    return f"module:{type(obj).__name__}"

