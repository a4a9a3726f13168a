"""Where each variable of a live Keras model sits in Keras' saving walk: the walk ``save_weights`` makes
(each layer's group, named after its class and counted in a model's list, or after the attribute that
holds it; the layer's name recorded on it; its variables numbered), run without writing anything, so that
a live model's variables are named as a file of it names them (:mod:`.keras_names`).

The walk is Keras' own (``saving_lib._walk_saveable``: which attributes hold what, in which order);
where that private function is missing (another Keras), :func:`saved_places` returns None and the model's
variables keep their TF object paths. ``tests/test_keras_formats.py`` checks the places against the files
Keras writes. Keras is imported inside the functions.
"""

from __future__ import annotations

from typing import Any

from .._quiet import quiet_import
from .keras_names import Place, containers, counted, place_of_group, snake_case

__all__ = ["saved_places"]


def saved_places(model: Any) -> dict[int, Place] | None:
    """``id`` of each variable Keras saves for ``model`` -> its :class:`Place` (with its own name as role);
    None when Keras' saving walk cannot be followed here."""
    try:
        KerasSaveable = quiet_import("keras.src.saving.keras_saveable").KerasSaveable
        _walk_saveable = quiet_import("keras.src.saving.saving_lib")._walk_saveable
    except ImportError:
        return None
    walk = _Walk(KerasSaveable, _walk_saveable)
    try:
        walk.state(model, "")
    except (AttributeError, TypeError):  # Keras' saving internals are not what this module follows
        return None
    places, models = {}, containers(walk.names)
    for group, store in walk.owned:
        for key, variable in store.items():
            if key.isdigit():
                places[id(variable)] = place_of_group(group, walk.names, int(key), getattr(variable, "name", None),
                                                      models)
    return places


class _Walk:
    """Keras' ``_save_state`` / ``_save_container_state``, recording each saveable's group path, its name
    and its own variables (by ``save_own_variables`` into a dict: references, no value copied)."""

    def __init__(self, saveable_type: type, children: Any):
        self.saveable_type, self.children = saveable_type, children
        self.names: dict[str, str] = {}
        self.owned: list[tuple[str, dict[str, Any]]] = []
        self.visited: set[int] = set()

    def state(self, obj: Any, path: str) -> None:
        if id(obj) in self.visited:
            return
        if hasattr(obj, "save_own_variables"):
            store: dict[str, Any] = {}
            obj.save_own_variables(store)
            self.owned.append((path, store))
            if isinstance(getattr(obj, "name", None), str):
                self.names[path] = obj.name
        self.visited.add(id(obj))
        for attr, child in self.children(obj):
            if isinstance(child, self.saveable_type):
                self.state(child, _join(path, attr))
            elif isinstance(child, (list, dict, tuple)):
                self.container(child, _join(path, attr), set())

    def container(self, items: Any, path: str, seen: set[int]) -> None:
        if id(items) in seen:
            return
        seen.add(id(items))
        used: dict[str, int] = {}
        for item in list(items.values()) if isinstance(items, dict) else items:
            if isinstance(item, self.saveable_type):
                self.state(item, _join(path, counted(snake_case(type(item).__name__), used)))
            elif isinstance(item, (list, dict, tuple)):
                self.container(item, _join(path, counted("container", used)), seen)


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)
