"""Variable tables for TensorFlow targets: MetaGraphs, live graphs, Keras models, tf.Modules, builders.

TensorFlow (and Keras) are imported inside the functions only, so importing this module stays cheap.

- TF1 graphs: the variables a default ``tf.compat.v1.train.Saver()`` saves (the ``variables``
  collection), named and keyed as the Saver stores them; a partitioned variable is one logical
  variable with its full shape.
- Trackables (Keras 3 models, ``tf.Module``): every variable ``tf.train.Checkpoint(model=obj)``
  would save, named by the same walk :func:`warmstart.table.read_table` runs over a checkpoint's
  object graph, and keyed by the checkpoint key TF itself would write.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
import zipfile
from collections import deque
from collections.abc import Iterator
from typing import Any, Literal

from . import storage
from .errors import InputNotFoundError, TargetError, UsageError
from .formats import dtypes
from .formats.bundle import VALUE_SUFFIX, escape, preferred_paths
from .table import Variable, VariableTable

__all__ = [
    "table_from_meta_graph",
    "table_from_meta_graph_bytes",
    "table_from_graph",
    "table_from_trackable",
    "trackable_variables",
    "table_from_keras_file",
    "table_from_builder",
    "table_from_object",
]

TrackableKind = Literal["keras", "module"]
_ACCEPTED_OBJECTS = "a tf.Graph, a tf.compat.v1.Session, a Keras model (or layer) or a tf.Module"
_BUILDER_PREFIX = "py:"


# --------------------------------------------------------------------------- TF1 MetaGraphs


def table_from_meta_graph(url: str, storage_options: dict[str, Any] | None = None) -> VariableTable:
    """The variables a default TF1 ``Saver`` saves for the MetaGraph file (``*.meta``) at ``url``.

    Raises :class:`InputNotFoundError` when the file does not exist, :class:`StorageError` when it
    cannot be read, and :class:`TargetError` when it is not a valid MetaGraphDef.
    """
    loc = storage.resolve(url, storage_options)
    return table_from_meta_graph_bytes(storage.read_bytes(loc), loc.url)


def table_from_meta_graph_bytes(data: bytes, origin: str) -> VariableTable:
    """The variables of a serialized MetaGraphDef (binary, or text format as TF also reads).

    Raises :class:`TargetError`, naming ``origin``, when ``data`` is not a usable MetaGraphDef.
    """
    return _table_from_meta_graph_def(_parse_meta_graph(data, origin), origin)


def table_from_graph(graph: Any, origin: str | None = None) -> VariableTable:
    """The variables a default TF1 ``Saver`` would save for a live ``tf.Graph`` (or a Session's graph).

    Raises :class:`TargetError` when ``graph`` is neither, or its variables cannot be described.
    """
    import tensorflow as tf

    if isinstance(graph, (tf.compat.v1.Session, tf.compat.v1.InteractiveSession)):
        graph = graph.graph
    if not isinstance(graph, tf.Graph):
        raise TargetError(f"expected a tf.Graph or a tf.compat.v1.Session. Received: {type(graph).__name__}")
    # export_meta_graph refuses to run while eager execution is on (TF2's default), even with an
    # explicit graph=; inside graph.as_default() the graph is the current context and it works.
    with graph.as_default():
        meta_graph = tf.compat.v1.train.export_meta_graph(graph=graph)
    return _table_from_meta_graph_def(meta_graph, origin or f"graph:{id(graph):#x}")


def _parse_meta_graph(data: bytes, origin: str):
    """Parse MetaGraphDef bytes, binary or text format, as ``tf.compat.v1.train.import_meta_graph`` does.

    Raises :class:`TargetError` when neither gives a MetaGraphDef with a graph.
    """
    meta_graph = _parse_binary_meta_graph(data) or _parse_text_meta_graph(data)
    if meta_graph is None:
        raise TargetError(
            f"{origin} is not a TF MetaGraph (.meta) file: it parses as no MetaGraphDef holding a graph_def"
        )
    return meta_graph


def _parse_binary_meta_graph(data: bytes):
    """The binary MetaGraphDef in ``data`` if it holds a graph, else ``None``."""
    from google.protobuf import message
    from tensorflow.core.protobuf import meta_graph_pb2

    meta_graph = meta_graph_pb2.MetaGraphDef()
    try:
        meta_graph.ParseFromString(data)
    except message.DecodeError:
        return None
    return meta_graph if meta_graph.HasField("graph_def") else None


def _parse_text_meta_graph(data: bytes):
    """The text-format MetaGraphDef in ``data`` if it holds a graph, else ``None``."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import meta_graph_pb2

    meta_graph = meta_graph_pb2.MetaGraphDef()
    try:
        text_format.Merge(data.decode("utf-8"), meta_graph)
    except (UnicodeDecodeError, text_format.ParseError):
        return None
    return meta_graph if meta_graph.HasField("graph_def") else None


def _table_from_meta_graph_def(meta_graph, origin: str) -> VariableTable:
    """The table of a parsed MetaGraphDef: plain variables as they are, partition parts merged."""
    from google.protobuf import message
    from tensorflow.core.framework import variable_pb2

    nodes = {node.name: node for node in meta_graph.graph_def.node}
    plain: list[Variable] = []
    parts: dict[str, list[tuple[Any, Variable]]] = {}
    for raw in _variable_defs(meta_graph):
        try:
            var_def = variable_pb2.VariableDef.FromString(raw)
        except message.DecodeError as exc:
            raise TargetError(f"{origin}: malformed VariableDef in the 'variables' collection: {exc}") from None
        variable = _graph_variable(var_def, nodes, origin)
        if var_def.HasField("save_slice_info_def"):
            parts.setdefault(var_def.save_slice_info_def.full_name, []).append((var_def, variable))
        else:
            plain.append(variable)
    logical = plain + [_partitioned_variable(name, group, origin) for name, group in parts.items()]
    _check_unique(logical, origin)
    return VariableTable.of(logical, origin, "tf1-graph")


def _variable_defs(meta_graph) -> list[bytes]:
    """The serialized VariableDefs of the GLOBAL_VARIABLES collection, which a default Saver saves."""
    collection = meta_graph.collection_def.get("variables")
    return list(collection.bytes_list.value) if collection is not None else []


def _graph_variable(var_def, nodes: dict[str, Any], origin: str) -> Variable:
    """One (possibly partial) variable from its VariableDef and its op's ``dtype``/``shape`` attrs.

    Raises :class:`TargetError` when the op is missing or lacks a known dtype or rank.
    """
    name = var_def.variable_name.split(":", 1)[0]
    node = nodes.get(name)
    if node is None:
        raise TargetError(f"{origin}: variable {name!r} is in the 'variables' collection but not in the graph")
    if "dtype" not in node.attr or "shape" not in node.attr:
        raise TargetError(f"{origin}: variable {name!r} is a {node.op} op without dtype and shape attributes")
    dtype = _dtype_name(node.attr["dtype"].type, f"{origin}: variable {name!r}")
    shape = _shape_from_proto(node.attr["shape"].shape, f"{origin}: variable {name!r}")
    # The Saver stores a variable under its op name (ResourceVariable._shared_name / op.name).
    return Variable(name, shape, dtype, key=name, initial=var_def.initializer_name or None)


def _partitioned_variable(full_name: str, group: list[tuple[Any, Variable]], origin: str) -> Variable:
    """One logical variable for the parts of a partitioned variable (the Saver stores it sliced under
    ``full_name``). Raises :class:`TargetError` when the parts disagree on dtype."""
    found = {part.dtype for _, part in group}
    if len(found) != 1:
        raise TargetError(f"{origin}: the parts of partitioned variable {full_name!r} have different dtypes {sorted(found)}")
    first_def, first = group[0]
    shape = tuple(int(d) for d in first_def.save_slice_info_def.full_shape)
    initial = ",".join(part.initial or part.name for _, part in group)
    return Variable(full_name, shape, first.dtype, key=full_name, initial=initial, partitions=len(group))


def _shape_from_proto(shape_proto, what: str) -> tuple[int | None, ...]:
    """A TensorShapeProto as a tuple, unknown dims as ``None``; raises :class:`TargetError` for unknown rank."""
    if shape_proto.unknown_rank:
        raise TargetError(f"{what} has a shape of unknown rank: give the variable a shape (at least its rank)")
    return tuple(int(d.size) if d.size >= 0 else None for d in shape_proto.dim)


def _dtype_name(enum: int, what: str) -> str:
    """The warmstart name of TF dtype enum ``enum``; raises :class:`TargetError` for an unknown one."""
    try:
        return dtypes.by_enum(int(enum)).name
    except KeyError:
        raise TargetError(f"{what} has a dtype warmstart does not know (TF DataType enum {enum})") from None


def _check_unique(variables: list[Variable], origin: str) -> None:
    """Raise :class:`TargetError` when two variables share a name, as the Saver would refuse them."""
    seen: set[str] = set()
    for v in variables:
        if v.name in seen:
            raise TargetError(f"{origin}: two variables are saved under the name {v.name!r}")
        seen.add(v.name)


# --------------------------------------------------------------------------- trackables


def table_from_trackable(obj: Any, origin: str | None = None, kind: TrackableKind | None = None) -> VariableTable:
    """The variables ``tf.train.Checkpoint(model=obj).save(...)`` would write, named as
    :func:`warmstart.table.read_table` names them in that checkpoint (``model/...``).

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
    variables = [_trackable_variable(name, key, variable, origin) for name, key, variable in _walk_trackable(obj)]
    return VariableTable.of(variables, origin, kind)


def trackable_variables(obj: Any) -> dict[str, Any]:
    """The live variables of a trackable (Keras model or layer, ``tf.Module``) by the names
    :func:`table_from_trackable` gives them (``model/...``): the same walk, so a plan's target
    names find their variables. Values are ``tf.Variable`` or Keras variables."""
    return {name: variable for name, _, variable in _walk_trackable(obj)}


def _walk_trackable(obj: Any) -> list[tuple[str, str, Any]]:
    """(name, checkpoint key, variable) for every variable ``tf.train.Checkpoint(model=obj)`` saves."""
    import tensorflow as tf

    checkpoint = tf.train.Checkpoint(model=obj)
    objects, edges = _live_object_graph(checkpoint)
    root = id(checkpoint)
    keys = _first_found_paths(root, edges)
    names = preferred_paths(root, lambda node: edges[node])
    return [
        (name, keys[node] + VALUE_SUFFIX, objects[node])
        for node, name in names.items()
        if _is_saved_variable(objects[node])
    ]


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


def _trackable_variable(name: str, key: str, variable: Any, origin: str) -> Variable:
    """A table entry for a live ``tf.Variable`` or Keras variable; raises :class:`TargetError` for an
    unknown dtype or a shape of unknown rank."""
    import tensorflow as tf

    what = f"{origin}: variable {name!r}"
    dtype = _dtype_name(tf.as_dtype(variable.dtype).as_datatype_enum, what)
    shape = tf.TensorShape(variable.shape)
    if shape.rank is None:
        raise TargetError(f"{what} has a shape of unknown rank: give the variable a shape (at least its rank)")
    return Variable(name, tuple(shape.as_list()), dtype, key=key, initial=f"current value in {origin}")


def _live_origin(obj: Any, kind: str) -> str:
    if kind == "keras":
        return f"keras:{obj.name}"
    return f"module:{type(obj).__name__}"


# --------------------------------------------------------------------------- Keras files


def table_from_keras_file(url: str, storage_options: dict[str, Any] | None = None) -> VariableTable:
    """The variables of the Keras model in the ``.keras`` file at ``url`` (local or remote), loaded
    with ``safe_mode=True`` and without compiling it.

    Raises :class:`InputNotFoundError` when the file does not exist, :class:`StorageError` when it
    cannot be read, and :class:`TargetError` when it is not a loadable ``.keras`` archive (not a zip,
    unsafe content such as a Python lambda, unknown classes, ...).
    """
    loc = storage.resolve(url, storage_options)
    if not loc.path.endswith(".keras"):
        raise TargetError(f"{loc.url} is not a Keras model file: expected a name ending in '.keras'")
    with _local_file(loc) as path:
        model = _load_keras_model(path, loc.url)
    return table_from_trackable(model, origin=loc.url, kind="keras")


@contextlib.contextmanager
def _local_file(loc: storage.Location) -> Iterator[str]:
    """A local path holding the file at ``loc``: the file itself, or a temporary copy of a remote one."""
    if "file" in _protocols(loc):
        if not loc.fs.exists(loc.path):
            raise InputNotFoundError(f"{loc.url} does not exist")
        yield loc.path
        return
    data = storage.read_bytes(loc)
    with tempfile.TemporaryDirectory(prefix="warmstart-keras-") as tmp:
        path = os.path.join(tmp, "model.keras")
        with open(path, "wb") as f:
            f.write(data)
        yield path


def _protocols(loc: storage.Location) -> tuple[str, ...]:
    protocol = loc.fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _load_keras_model(path: str, url: str) -> Any:
    """Load a ``.keras`` archive safely; raises :class:`TargetError` with Keras's reason on failure."""
    import keras

    # Keras reports a file that is not a zip as "File not found", which misleads: check first.
    if not zipfile.is_zipfile(path):
        raise TargetError(f"{url} is not a .keras file: it is not a zip archive")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as exc:
        raise TargetError(f"cannot load the Keras model {url}: {exc}") from None


# --------------------------------------------------------------------------- builders and live objects


def table_from_builder(spec: str) -> VariableTable:
    """The variables of what the builder ``py:package.module:function`` returns when called without
    arguments: a ``tf.Graph``, a Keras model or a ``tf.Module`` (or a Session).

    This imports and runs user code, by design. Raises :class:`UsageError` for a malformed spec and
    :class:`TargetError` when the module cannot be imported, the function is missing, not callable
    or raises, or it returns anything else.
    """
    module_name, function_name = _parse_builder_spec(spec)
    builder = _import_builder(spec, module_name, function_name)
    built = _call_builder(spec, builder)
    return _table_from_live(built, origin=spec, described=f"builder {spec} returned")


def _parse_builder_spec(spec: str) -> tuple[str, str]:
    """``py:package.module:function`` -> (module, function); raises :class:`UsageError` otherwise."""
    body = spec[len(_BUILDER_PREFIX):] if isinstance(spec, str) and spec.startswith(_BUILDER_PREFIX) else None
    module_name, _, function_name = (body or "").partition(":")
    if not module_name or not function_name.isidentifier():
        raise UsageError(f"a builder target is written 'py:package.module:function'. Received: {spec!r}")
    return module_name, function_name


def _import_builder(spec: str, module_name: str, function_name: str) -> Any:
    """The builder function; raises :class:`TargetError` naming ``spec`` when it cannot be found."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise TargetError(f"builder {spec}: cannot import module {module_name!r}: {exc}") from None
    except Exception as exc:  # the module is user code: any error while importing it is the target's
        raise TargetError(f"builder {spec}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    builder = getattr(module, function_name, None)
    if builder is None:
        raise TargetError(f"builder {spec}: module {module_name!r} has no attribute {function_name!r}")
    if not callable(builder):
        raise TargetError(f"builder {spec}: {module_name}.{function_name} is a {type(builder).__name__}, not a function")
    return builder


def _call_builder(spec: str, builder: Any) -> Any:
    """Call the builder without arguments; raises :class:`TargetError` when it raises."""
    try:
        return builder()
    except Exception as exc:  # user code: whatever it raises makes the target unusable
        raise TargetError(f"builder {spec} raised {type(exc).__name__}: {exc}") from exc


def table_from_object(obj: Any) -> VariableTable:
    """The table of a live object: a ``tf.Graph``, a ``tf.compat.v1.Session``, a Keras model or a
    ``tf.Module``. Raises :class:`TargetError` for anything else."""
    return _table_from_live(obj, origin=None, described="the target is")


def _table_from_live(obj: Any, origin: str | None, described: str) -> VariableTable:
    """Dispatch a live object to its table function; raises :class:`TargetError` for other objects."""
    import keras
    import tensorflow as tf

    if isinstance(obj, (tf.Graph, tf.compat.v1.Session, tf.compat.v1.InteractiveSession)):
        return table_from_graph(obj, origin)
    if isinstance(obj, keras.Layer):
        return table_from_trackable(obj, origin, kind="keras")
    if isinstance(obj, tf.Module):
        return table_from_trackable(obj, origin, kind="module")
    raise TargetError(f"{described} a {type(obj).__module__}.{type(obj).__qualname__}; expected {_ACCEPTED_OBJECTS}")
