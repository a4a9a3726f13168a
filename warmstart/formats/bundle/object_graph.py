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

__all__ = ["preferred_paths", "escape", "VALUE_SUFFIX", "OBJECT_GRAPH_KEY"]

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def escape(local_name: str) -> str:
    """TF's escaping of one path component ('.' -> '..', '/' -> '.S')."""
    return local_name.replace(".", "..").replace("/", ".S")


def _is_demoted(local_name: str) -> bool:
    return local_name == "optimizer" or local_name.endswith("_optimizer")


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
