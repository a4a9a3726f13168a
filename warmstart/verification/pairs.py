"""Declared output pairs (``verify: pairs:``): a tensor of a TF1 graph or the output of a Keras layer or model on
each side, fed the same probes, compared end to end.

An endpoint is ``name:0`` in a TF1 graph, or a layer path (``encoder/lstm``, through nested models) or ``output``
in a Keras model. The probes are drawn from the target's inputs (or taken from the ``npz`` file) and fed, by the
pair's ``inputs`` (the only input of each side by default), to the source.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError, UsageError
from ..formats.keras import check_members
from ..storage import METADATA_BYTES, read_bytes, resolve
from ..planning.parity import OutputPair, PairInput
from .calls import call_layer, layer_inputs
from .graphs import GraphSide
from .probes import InputSpec, draw, with_range

__all__ = ["Endpoint", "endpoint", "target_probes", "source_feeds", "read_npz"]


class Endpoint:
    """One side of a pair: what it computes and which inputs it takes (by name)."""

    def __init__(self, side: Any, name: str, where: str):
        self.side, self.name, self.where = side, name, where
        if isinstance(side, GraphSide):
            self.specs = side.inputs(name, where)
            return
        holder, layer = _resolve(side.model, name, where)
        import keras

        try:
            self._model = holder if layer is holder else keras.Model(holder.inputs, layer.output)
        except (AttributeError, ValueError) as exc:
            raise UsageError(f"{where}: the output of {name!r} is not one tensor of the model ({exc}): name a layer "
                             "called once") from None
        inputs = layer_inputs(self._model)
        if isinstance(inputs, str):
            raise UsageError(f"{where}: {name!r}: {inputs}")
        self._inputs = inputs
        self.specs = {spec.name: spec for _, spec in inputs.specs}

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        if isinstance(self.side, GraphSide):
            return self.side.run(self.name, feeds, self.where)
        return call_layer(self._model, self._inputs, [feeds[spec.name] for _, spec in self._inputs.specs])

    def variables(self) -> tuple[str, ...]:
        """The side's variables (by the plan's names) what it computes depends on."""
        if isinstance(self.side, GraphSide):
            return self.side.variables_of(self.name, self.where)
        names = self.side.names
        return tuple(dict.fromkeys(names[id(v)] for v in self._model.weights if id(v) in names))


def _resolve(model: Any, path: str, where: str) -> tuple[Any, Any]:
    """(the model holding the layer, the layer) for a layer path through nested models; ``output``: the model."""
    import keras

    if path == "output":
        return model, model
    holder, layer = model, model
    for part in path.split("/"):
        if not isinstance(layer, keras.Model):
            raise UsageError(f"{where}: {path!r}: {layer.name!r} holds no layers")
        holder = layer
        try:
            layer = holder.get_layer(part)
        except ValueError:
            names = [sub.name for sub in holder.layers]
            raise UsageError(f"{where}: no layer {part!r} in {holder.name!r} (its layers: {', '.join(names[:8])}"
                             f"{'...' if len(names) > 8 else ''})") from None
    return holder, layer


def endpoint(side: Any, name: str, what: str, where: str) -> Endpoint:
    """The endpoint ``name`` of ``side`` (a :class:`GraphSide`, a Keras side, or why there is none: a string);
    raises :class:`UsageError` when the side cannot have one."""
    if isinstance(side, str):
        raise UsageError(f"{where}: {what} {name!r} cannot be computed: {side}")
    if isinstance(side, GraphSide) != (":" in name):
        kind = "a TF1 graph: name a tensor ('op:0')" if isinstance(side, GraphSide) else \
            "a Keras model: name a layer or 'output'"
        raise UsageError(f"{where}: {what} {name!r}: the {what} is {kind}")
    return Endpoint(side, name, where)


def _declared(pair: OutputPair, specs: Mapping[str, InputSpec], side: str, where: str) -> list[tuple[str, PairInput]]:
    """(input name on ``side``, declaration) for each probe input of the pair."""
    declared = pair.inputs or [PairInput()]
    if not pair.inputs and len(specs) != 1:
        raise UsageError(f"{where}: the {side} takes {len(specs)} inputs ({', '.join(specs)}): say where each probe "
                         "goes (inputs: [{source: ..., target: ...}])")
    out = []
    for given in declared:
        name = getattr(given, side) or (next(iter(specs)) if len(specs) == 1 else None)
        if name not in specs:
            raise UsageError(f"{where}: the {side} has no input {name!r} (it takes {', '.join(specs) or 'none'})")
        out.append((name, given))
    return out


def target_probes(pair: OutputPair, end: Endpoint, arrays: Mapping[str, np.ndarray] | None, probes: int, seed: int,
                  where: str) -> dict[str, np.ndarray]:
    """The probes of a pair by the target's input names: the ``npz`` arrays named, else drawn from the target's
    input specs (a declared range for integers)."""
    out = {}
    for name, given in _declared(pair, end.specs, "target", where):
        if given.array is not None:
            if arrays is None or given.array not in arrays:
                raise UsageError(f"{where}: the npz file has no array {given.array!r}")
            out[name] = arrays[given.array]
        else:
            out[name] = draw(with_range(end.specs[name], given.range), probes, seed, where)
    unfed = sorted(set(end.specs) - set(out))
    if unfed:
        raise UsageError(f"{where}: the target's input {unfed[0]!r} gets no probe: add it to the pair's inputs")
    return out


def source_feeds(pair: OutputPair, end: Endpoint, target: Mapping[str, np.ndarray], where: str
                 ) -> dict[str, np.ndarray]:
    """The target's probes fed to the source's inputs, each cast to the dtype the source's input takes."""
    targets = list(target) if not pair.inputs else [i.target or next(iter(target)) for i in pair.inputs]
    feeds = {}
    for (name, _), target_name in zip(_declared(pair, end.specs, "source", where), targets):
        feeds[name] = np.asarray(target[target_name]).astype(_numpy_dtype(end.specs[name].dtype))
    unfed = sorted(set(end.specs) - set(feeds))
    if unfed:
        raise UsageError(f"{where}: the source's input {unfed[0]!r} gets no probe: add it to the pair's inputs")
    return feeds


def _numpy_dtype(name: str) -> Any:
    if name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return np.dtype(name)


def read_npz(url: str, storage_options: dict[str, Any] | None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, read within its limit, its members checked as a zip's, no pickles."""
    loc = resolve(url, storage_options)
    data = read_bytes(loc, METADATA_BYTES)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            check_members(archive, loc.url)
        with np.load(io.BytesIO(data), allow_pickle=False) as found:
            return {name: found[name] for name in found.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise InputError(f"{loc.url}: not an .npz file of arrays ({exc})") from None
