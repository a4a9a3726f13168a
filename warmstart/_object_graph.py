"""Names for the variables of TF2 object-based checkpoints and live trackable objects.

TF names each saved value by the first path to it in a breadth-first walk of the object
graph. With Keras 3, that walk often reaches a model's weights through the optimizer first
(``optimizer/_trainable_variables/0``), so a model's weights would be named after the
optimizer's bookkeeping. warmstart names a variable by the shortest path that avoids edges
called ``optimizer`` (falling back to paths through them), which gives the same
``model/...`` name whether or not an optimizer was saved with the model. The same walk runs
over a checkpoint's ``_CHECKPOINTABLE_OBJECT_GRAPH`` and over live objects, so names match.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from ._protos import _fields  # the wire-format walker

__all__ = ["ObjectNode", "decode_object_graph", "preferred_paths", "escape", "VALUE_SUFFIX", "OBJECT_GRAPH_KEY"]

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def escape(local_name: str) -> str:
    """TF's escaping of one path component ('.' -> '..', '/' -> '.S')."""
    return local_name.replace(".", "..").replace("/", ".S")


def _is_demoted(local_name: str) -> bool:
    return local_name == "optimizer" or local_name.endswith("_optimizer")


@dataclass(frozen=True, slots=True)
class ObjectNode:
    """One node of a TrackableObjectGraph: its children and its saved attributes."""

    children: tuple[tuple[int, str], ...]  # (node id, local name)
    attributes: tuple[tuple[str, str], ...]  # (attribute name, checkpoint key)


def decode_object_graph(data: bytes) -> list[ObjectNode]:
    """Decode a serialized ``TrackableObjectGraph`` (fields: nodes=1; children=1, attributes=2)."""
    nodes = []
    for number, _, node_bytes in _fields(data):
        if number != 1:
            continue
        children, attributes = [], []
        for fnum, _, value in _fields(node_bytes):
            if fnum == 1:
                node_id, local = 0, ""
                for rnum, _, rval in _fields(value):
                    if rnum == 1:
                        node_id = rval
                    elif rnum == 2:
                        local = bytes(rval).decode()
                children.append((node_id, local))
            elif fnum == 2:
                name, key = "", ""
                for snum, _, sval in _fields(value):
                    if snum == 1:
                        name = bytes(sval).decode()
                    elif snum == 3:
                        key = bytes(sval).decode()
                attributes.append((name, key))
        nodes.append(ObjectNode(tuple(children), tuple(attributes)))
    return nodes


def preferred_paths(
    root: Hashable, children: Callable[[Hashable], Iterable[tuple[str, Hashable]]]
) -> dict[Hashable, str]:
    """Map every object reachable from ``root`` to its preferred escaped path ('a/b/c').

    Breadth-first in child order, as TF does, except that edges named like an optimizer are
    followed only after everything reachable without them has a name.
    """
    paths: dict[Hashable, str] = {root: ""}
    deferred: deque[tuple[Hashable, str]] = deque()
    queue: deque[Hashable] = deque([root])

    def walk():
        while queue:
            node = queue.popleft()
            for local, child in children(node):
                if child in paths:
                    continue
                path = f"{paths[node]}/{escape(local)}" if paths[node] else escape(local)
                if _is_demoted(local):
                    deferred.append((child, path))
                    continue
                paths[child] = path
                queue.append(child)

    walk()
    while deferred:
        child, path = deferred.popleft()
        if child not in paths:
            paths[child] = path
            queue.append(child)
            walk()
    del paths[root]
    return paths
