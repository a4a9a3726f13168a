"""The variables of Keras' built-in layers, read from a model's configuration without Keras.

A ``.keras`` archive's ``config.json`` (a legacy model file's ``model_config``) lists the model's layers
with their classes; the weights file holds each layer's variables as ``vars/0..k`` under Keras' structure
path (``layers/dense_1``). What ``vars/N`` *is* (``kernel``, ``gamma``) is the layer class's knowledge: the
table below holds it for Keras' built-in layers (their own variables in the order Keras saves them, and
the sub-layers Keras saves under an attribute: a MultiHeadAttention's ``query_dense``, an LSTM's ``cell``).
A configuration with any other class (a custom layer, a LoRA or quantized layer) is not read here: the
model is then built by Keras (:mod:`.keras_files`). ``tests/test_keras_names_config.py`` checks the table
against the variables Keras itself creates.

For a bare weights file (no configuration), :func:`guess_roles` names a layer's variables from its group's
class (``layers/batch_normalization_2``: gamma, beta, moving_mean, moving_variance) where the number of
variables leaves a single possibility: aliases for rules and hints, never the variables' names.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .keras_names import counted, snake_case

__all__ = ["LayerVariables", "variables_from_config", "guess_roles", "looks_generated"]

_Condition = tuple[str, Any, bool]  # a config key, Keras' default, the truth value that keeps the variable
_Role = tuple[str, tuple[_Condition, ...]]


def _roles(*spec: str | tuple[str, str] | _Role) -> tuple[_Role, ...]:
    """``"kernel"``: always; ``("bias", "use_bias")``: when ``use_bias`` (default true); or a full role."""
    out = []
    for item in spec:
        if isinstance(item, str):
            out.append((item, ()))
        elif isinstance(item[1], str):
            out.append((item[0], ((item[1], True, True),)))
        else:
            out.append(item)  # type: ignore[arg-type]
    return tuple(out)


@dataclass(frozen=True)
class _Kind:
    """A layer class: its own variables and the sub-layers Keras saves under an attribute."""

    roles: tuple[_Role, ...] = ()
    sublayers: tuple[tuple[str, str], ...] = ()  # (attribute, the sub-layer's class); see _sublayer_config

    def own(self, config: Mapping[str, Any]) -> list[str]:
        return [role for role, conditions in self.roles
                if all(bool(config.get(key, default)) == keep for key, default, keep in conditions)]


_KERNEL_BIAS = _roles("kernel", ("bias", "use_bias"))
_CELL = _roles("kernel", "recurrent_kernel", ("bias", "use_bias"))
_NONE = _Kind()
_KINDS: dict[str, _Kind] = {
    "Dense": _Kind(_KERNEL_BIAS),
    "EinsumDense": _Kind(_roles("kernel", ("bias", (("bias_axes", None, True),)))),
    "Embedding": _Kind(_roles("embeddings")),
    **{f"Conv{d}D{t}": _Kind(_KERNEL_BIAS) for d in (1, 2, 3) for t in ("", "Transpose")},
    **{f"DepthwiseConv{d}D": _Kind(_KERNEL_BIAS) for d in (1, 2)},
    **{f"SeparableConv{d}D": _Kind(_roles("depthwise_kernel", "pointwise_kernel", ("bias", "use_bias")))
       for d in (1, 2)},
    "BatchNormalization": _Kind(_roles(("gamma", "scale"), ("beta", "center"), "moving_mean", "moving_variance")),
    "LayerNormalization": _Kind(_roles(("gamma", "scale"), ("beta", (("center", True, True),
                                                                      ("rms_scaling", False, False))))),
    "GroupNormalization": _Kind(_roles(("gamma", "scale"), ("beta", "center"))),
    "PReLU": _Kind(_roles("alpha")),
    "Normalization": _Kind(_roles(*((r, (("mean", None, False),)) for r in ("mean", "variance", "count")))),
    "LSTMCell": _Kind(_CELL), "GRUCell": _Kind(_CELL), "SimpleRNNCell": _Kind(_CELL),
    "LSTM": _Kind(sublayers=(("cell", "LSTMCell"),)),
    "GRU": _Kind(sublayers=(("cell", "GRUCell"),)),
    "SimpleRNN": _Kind(sublayers=(("cell", "SimpleRNNCell"),)),
    "MultiHeadAttention": _Kind(sublayers=tuple((f"{p}_dense", "EinsumDense") for p in
                                               ("query", "key", "value", "output"))),
    "Bidirectional": _Kind(sublayers=(("forward_layer", "layer"), ("backward_layer", "backward_layer"))),
    "TimeDistributed": _Kind(sublayers=(("layer", "layer"),)),
    **{name: _NONE for name in (
        "InputLayer", "Activation", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
        "GaussianDropout", "GaussianNoise", "AlphaDropout", "ActivityRegularization", "Flatten", "Reshape",
        "Permute", "RepeatVector", "Identity", "Masking", "Rescaling", "Softmax", "ReLU", "LeakyReLU", "ELU",
        "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot", "UnitNormalization",
        *(f"{p}{d}D" for p in ("MaxPooling", "AveragePooling", "GlobalMaxPooling", "GlobalAveragePooling",
                               "ZeroPadding", "Cropping", "UpSampling") for d in (1, 2, 3)))},
}
_CONTAINERS = ("Functional", "Sequential")


@dataclass(frozen=True, slots=True)
class LayerVariables:
    """One layer with variables: its group in a weights file (Keras' structure path), the model-level
    layer it belongs to (its name in the configuration), and its variables' own names in saving order."""

    group: str
    top: str | None
    roles: tuple[str, ...]


class _Unknown(Exception):
    """A class or configuration this table does not describe."""


def variables_from_config(config: Mapping[str, Any]) -> list[LayerVariables] | None:
    """Every layer with variables of the model ``config`` describes (a ``.keras`` ``config.json``), in the
    order Keras lists their weights; None when a layer is not one of Keras' built-in layers this table
    describes (then only Keras itself knows its variables)."""
    try:
        return list(_walk(config, "", None))
    except (_Unknown, RecursionError):  # RecursionError: a configuration nested deeper than any model
        return None


def _walk(layer: Mapping[str, Any], group: str, top: str | None) -> Iterator[LayerVariables]:
    class_name, config = _class_and_config(layer)
    if class_name in _CONTAINERS:
        counts: dict[str, int] = {}
        for child in _list(config.get("layers")):
            child_class, child_config = _class_and_config(child)
            segment = counted(snake_case(child_class), counts)
            yield from _walk(child, _join(group, "layers", segment), top or _name(child_config))
        return
    kind = _KINDS.get(class_name)
    if kind is None or config.get("lora_rank") or "Quantized" in str(config.get("dtype")):
        raise _Unknown(class_name)
    own = kind.own(config)
    if own:
        yield LayerVariables(group, top, tuple(own))
    for attribute, sub in kind.sublayers:
        yield from _walk(_sublayer_config(config, sub), _join(group, attribute), top)


def _sublayer_config(config: Mapping[str, Any], sub: str) -> Mapping[str, Any]:
    """The configuration of a sub-layer: a wrapper's own (``layer``, ``backward_layer``, or the forward
    layer again when no backward one is given) or a built-in one's (a cell, an attention's dense)."""
    if sub in ("layer", "backward_layer"):
        inner = config.get(sub) or config.get("layer")
        if not isinstance(inner, Mapping):
            raise _Unknown(sub)
        return inner
    if sub == "EinsumDense":  # MultiHeadAttention's projections have a bias when the attention has one
        return {"class_name": sub, "config": {"bias_axes": "b" if config.get("use_bias", True) else None}}
    return {"class_name": sub, "config": {"use_bias": config.get("use_bias", True)}}


def _class_and_config(layer: Any) -> tuple[str, Mapping[str, Any]]:
    """A serialized layer's class and configuration; unknown unless it is one of Keras' own."""
    if not isinstance(layer, Mapping) or not isinstance(layer.get("config"), Mapping):
        raise _Unknown("not a serialized layer")
    class_name = layer.get("class_name")
    module = layer.get("module") or "keras"
    if not isinstance(class_name, str) or not str(module).startswith("keras") or \
            layer.get("registered_name") not in (None, class_name):
        raise _Unknown(str(class_name))
    return class_name, layer["config"]


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _Unknown("layers")
    return value


def _name(config: Mapping[str, Any]) -> str | None:
    name = config.get("name")
    return name if isinstance(name, str) else None


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


_BY_SNAKE = {snake_case(name): kind for name, kind in _KINDS.items()}
_SNAKE = re.compile(r"[a-z][a-z0-9_]*")


def guess_roles(group: str, count: int) -> tuple[str, ...] | None:
    """The own names of the ``count`` variables of the layer at ``group`` in a bare weights file, from its
    class as the group's path gives it (``layers/batch_normalization_2``, ``layers/lstm/cell``), when
    Keras' built-in class of that name has a single arrangement of ``count`` variables; None otherwise."""
    parts = group.split("/")
    kind = _BY_SNAKE.get(_strip_count(parts[-1]))
    if kind is None and len(parts) >= 2:  # a built-in layer's sub-layer: an LSTM's cell
        parent = _BY_SNAKE.get(_strip_count(parts[-2]))
        sub = dict(parent.sublayers).get(parts[-1]) if parent is not None else None
        kind = _KINDS.get(sub) if sub is not None else None
    if kind is None:
        return None
    keys = sorted({key for _, conditions in kind.roles for key, _, _ in conditions})
    found = {tuple(kind.own(dict(zip(keys, values)))) for values in itertools.product((True, False), repeat=len(keys))}
    fitting = [roles for roles in found if len(roles) == count]
    return fitting[0] if len(fitting) == 1 else None


def looks_generated(path: str) -> bool:
    """True when a layer name on a variable's path (``dense_2/kernel``, ``block/conv2d/kernel``) may be one Keras
    generated: a built-in layer class in snake case (not a recurrent layer's ``lstm_cell``, which Keras names so
    itself), or any snake-case name with a count (``my_block_3``; not ``Conv_1``). Said of the full names a TF2
    checkpoint records, which carry no class: such a name is no identity."""
    return any((part in _BY_SNAKE and not part.endswith("_cell")) or
               (_strip_count(part) != part and _SNAKE.fullmatch(part) is not None) for part in path.split("/")[:-1])


def _strip_count(segment: str) -> str:
    head, _, tail = segment.rpartition("_")
    return head if head and tail.isdigit() else segment
