"""Variable tables of live trackables (Keras 3 models, ``tf.Module``): what ``tf.train.Checkpoint(model=obj)``
would save, named by the walk :func:`warmstart.tables.read_table` runs over a checkpoint's object graph
and keyed by the checkpoint key TF itself would write. TensorFlow is imported inside the functions.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from .._quiet import quiet_import
from ..errors import TargetError
from ..formats.bundle import VALUE_SUFFIX, escape, preferred_paths
from .keras_names import KerasName, name_places
from .keras_walk import saved_places
from .keras_weights import variable_of
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
    keras = quiet_import("keras")

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
    tf = quiet_import("tensorflow")

    objects, _ = _live_object_graph(tf.train.Checkpoint(model=obj))
    return [o for o in objects.values() if callable(getattr(o, "finalize_state", None))]


@dataclass(frozen=True)
class _Found:
    name: str
    key: str  # the checkpoint key tf.train.Checkpoint(model=obj) writes
    variable: Any
    object_path: str | None  # when the name is the Keras path
    positional: bool
    keras: KerasName | None = None


def _walk_trackable(obj: Any) -> list[_Found]:
    """Every variable ``tf.train.Checkpoint(model=obj)`` saves. A Keras model's variables are named as
    a weights file of it names them (:mod:`.keras_names`: ``variable.path``), with the object path as an
    alias; other variables (``tf.Module``, optimizer state) by object path (``model/...``)."""
    tf = quiet_import("tensorflow")

    checkpoint = tf.train.Checkpoint(model=obj)
    objects, edges = _live_object_graph(checkpoint)
    root = id(checkpoint)
    keys = _first_found_paths(root, edges)
    found = [(name, keys[node] + VALUE_SUFFIX, objects[node])
             for node, name in preferred_paths(root, lambda node: edges[node]).items()
             if _is_saved_variable(objects[node])]
    names = _keras_names(obj)
    return [_Found(names[id(v)].name, key, v, name, names[id(v)].generated, names[id(v)]) if id(v) in names
            else _Found(name, key, v, None, has_list_index(name)) for name, key, v in found]


def _keras_names(obj: Any) -> dict[int, KerasName]:
    """``id`` of each variable Keras saves for ``obj`` (a Keras layer or model) -> its names."""
    keras = quiet_import("keras")

    places = saved_places(obj) if isinstance(obj, keras.Layer) else None
    if not places:
        return {}
    return name_places(places)


def _live_object_graph(root: Any) -> tuple[dict[int, Any], dict[int, list[tuple[str, int]]]]:
    """Every object reachable from ``root`` (by ``id``) and its children in TF's serialization order.

    Objects are keyed by ``id`` because variables are unhashable; ``objects`` keeps them alive.
    The Checkpoint's own ``save_counter`` is left out: it belongs to the checkpoint, not the model.
    """
    tf = quiet_import("tensorflow")

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
    keras = quiet_import("keras")
    tf = quiet_import("tensorflow")

    return isinstance(obj, (tf.Variable, keras.Variable))


def _trackable_variable(found: _Found, origin: str) -> Variable:
    """A table entry for a live ``tf.Variable`` or Keras variable; raises :class:`TargetError` for an
    unknown dtype or a shape of unknown rank."""
    tf = quiet_import("tensorflow")

    what = f"{origin}: variable {found.name!r}"
    dtype = dtype_name(tf.as_dtype(found.variable.dtype).as_datatype_enum, what)
    shape = tf.TensorShape(found.variable.shape)
    if shape.rank is None:
        raise TargetError(f"{what} has a shape of unknown rank: give the variable a shape (at least its rank)")
    if found.keras is not None:
        return variable_of(found.keras, tuple(shape.as_list()), dtype, found.key,
                           initial=f"current value in {origin}", object_path=found.object_path)
    return Variable(found.name, tuple(shape.as_list()), dtype, key=found.key, initial=f"current value in {origin}",
                    object_path=found.object_path, positional=found.positional)


def _live_origin(obj: Any, kind: str) -> str:
    if kind == "keras":
        return f"keras:{obj.name}"
    return f"module:{type(obj).__name__}"

