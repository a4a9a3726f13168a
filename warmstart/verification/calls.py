"""Calling one Keras layer (or a model) on probes: its input specs, the call in inference mode, and what differs
between two layers' configurations when their outputs do.

A layer's inputs come from the model's inputs for a Functional or Sequential model, else from the shapes it was
built with (``get_build_config``: one input, or one per argument of ``call``); integer inputs are token ids, drawn
below the vocabulary of the lookup layer that reads them. Keras is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .probes import InputSpec

__all__ = ["LayerInputs", "layer_inputs", "call_layer", "Profile", "profile", "config_differences", "lookup_size",
           "flatten_layers", "detached", "may_be_random"]

_LOOKUP_KEYS = ("input_dim", "vocabulary_size", "num_tokens")  # Embedding, keras-hub's embeddings, CategoryEncoding
# Configuration keys that say how a layer trains, not what it computes in inference.
_TRAINING_ONLY = ("_initializer", "_regularizer", "_constraint", "seed")
_NAMES = ("name", "trainable", "dtype")  # the dtype policy is compared by its name, below
# Layers that draw random numbers in training only: with training=False they are the identity.
_INFERENCE_IDENTITY = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
                       "GaussianNoise", "AlphaDropout")


@dataclass(frozen=True)
class LayerInputs:
    """How to call a layer: its input specs, by keyword (None: positional) and the structure a model takes."""

    specs: tuple[tuple[str | None, InputSpec], ...]
    structure: Any = None  # a model's input structure (a dict of KerasTensors, a list...), None for a layer


def flatten_layers(model: Any) -> list[tuple[Any, int]]:
    """(layer, depth) of ``model`` and every layer below it, each once, depth-first in the order Keras tracks them
    (a Functional model's layers in the order they compute), each layer after the layers it holds."""
    out, seen = [], set()

    def visit(layer: Any, depth: int) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        for child in getattr(layer, "_layers", ()) or ():
            visit(child, depth + 1)
        out.append((layer, depth))

    visit(model, 0)
    return out


def may_be_random(layer: Any) -> bool:
    """True when ``layer`` or a layer in it draws random numbers (holds a Keras ``SeedGenerator``), other than the
    dropout and noise layers Keras makes the identity in inference."""
    import keras

    quiet = tuple(getattr(keras.layers, name) for name in _INFERENCE_IDENTITY if hasattr(keras.layers, name))
    return any(getattr(sub, "_seed_generators", None) and not isinstance(sub, quiet)
               for sub, _ in flatten_layers(layer))


def lookup_size(layer: Any) -> int | None:
    """The vocabulary of a lookup layer (an Embedding's ``input_dim``), or None."""
    try:
        config = layer.get_config()
    except (NotImplementedError, TypeError, AttributeError):
        return None
    return next((int(config[k]) for k in _LOOKUP_KEYS if isinstance(config.get(k), int)), None)


def _smallest_lookup(layer: Any) -> int | None:
    sizes = [n for sub, _ in flatten_layers(layer) if (n := lookup_size(sub)) is not None]
    return min(sizes) if sizes else None


def _spec(name: str, shape: Sequence[Any], dtype: str, vocabulary: int | None) -> InputSpec:
    spec = InputSpec(name, tuple(None if d is None else int(d) for d in shape), dtype)
    if spec.integer and vocabulary is not None:
        return InputSpec(spec.name, spec.shape, spec.dtype, 0, vocabulary)
    return spec


def layer_inputs(layer: Any) -> LayerInputs | str:
    """The inputs ``layer`` takes, or why they are unknown (in words)."""
    import keras

    if isinstance(layer, keras.Model) and getattr(layer, "inputs", None):
        flat = list(layer.inputs)
        vocabulary = _smallest_lookup(layer)
        try:
            structure = layer.input
        except (AttributeError, ValueError):  # a Sequential model never called: its inputs are a list
            structure = flat
        return LayerInputs(tuple((None, _spec(t.name, t.shape, str(t.dtype), vocabulary)) for t in flat), structure)
    try:
        build = layer.get_build_config() or {}
    except (NotImplementedError, TypeError, AttributeError):
        build = {}
    dtype, vocabulary = _input_dtype(layer), lookup_size(layer)
    if build.get("input_shape") is not None:
        shape = build["input_shape"]
        if shape and all(isinstance(s, (list, tuple)) for s in shape):  # several inputs, one list
            return LayerInputs(tuple((None, _spec(f"input_{i}", s, dtype, vocabulary)) for i, s in enumerate(shape)),
                               structure=[None] * len(shape))
        return LayerInputs(((None, _spec("inputs", shape, dtype, vocabulary)),))
    shapes = build.get("shapes_dict") or {}
    if shapes:
        return LayerInputs(tuple((k.removesuffix("_shape"), _spec(k.removesuffix("_shape"), s, dtype, vocabulary))
                                 for k, s in shapes.items() if s is not None))
    return "its input shape is unknown (it was not built from a shape, and it is not a model with inputs)"


def _input_dtype(layer: Any) -> str:
    """The dtype of the input a layer is called on: the input tensor's in a Functional graph (called once), an
    integer for a lookup layer, else what the layer computes in."""
    try:
        return str(layer.input.dtype)
    except (AttributeError, ValueError, TypeError):
        pass
    return "int32" if lookup_size(layer) is not None else str(getattr(layer, "compute_dtype", None) or "float32")


def detached(inputs: LayerInputs) -> LayerInputs:
    """``inputs`` without references to the model they came from (its input structure as a skeleton), so that
    the model can be released while its probes are kept."""
    import keras

    if inputs.structure is None:
        return inputs
    return LayerInputs(inputs.specs, keras.tree.map_structure(lambda _: 0, inputs.structure))


def call_layer(layer: Any, inputs: LayerInputs, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``layer`` called on ``arrays`` (one per spec of ``inputs``), in inference mode (``training=False``); its
    outputs flattened, as NumPy arrays."""
    import keras

    if inputs.structure is not None and isinstance(layer, keras.Model):
        out = layer(keras.tree.pack_sequence_as(inputs.structure, list(arrays)), training=False)
    elif inputs.structure is not None:
        out = layer(list(arrays), training=False)
    else:
        args = [a for (key, _), a in zip(inputs.specs, arrays) if key is None]
        kwargs = {key: a for (key, _), a in zip(inputs.specs, arrays) if key is not None}
        out = layer(*args, **kwargs, training=False)
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in keras.tree.flatten(out)]


@dataclass(frozen=True)
class Profile:
    """What a layer is, kept without the layer: its class, dtype policy, configuration (None for a model, whose
    layers say it) and compute dtype, and the layers below it that derive state (``finalize_state``)."""

    layer_class: str
    policy: str | None
    config: dict[str, Any] | None
    compute_dtype: str
    derives_state: tuple[str, ...]


def profile(layer: Any) -> Profile:
    import keras

    config = None
    if not isinstance(layer, keras.Model):
        try:
            config = layer.get_config()
        except (NotImplementedError, TypeError, AttributeError):
            config = None
    stateful = tuple(sub.name for sub, _ in flatten_layers(layer) if callable(getattr(sub, "finalize_state", None)))
    return Profile(type(layer).__name__, _policy(layer), config, str(getattr(layer, "compute_dtype", "float32")),
                   stateful)


def config_differences(source: Profile, target: Profile) -> list[str]:
    """What differs between two layers, as ``key: source -> target``: the class, the dtype policy, and every
    configuration value that acts in inference (initializers, regularizers, constraints and names left out)."""
    differ = []
    if source.layer_class != target.layer_class:
        return [f"class {source.layer_class} -> {target.layer_class}"]
    if source.policy != target.policy:
        differ.append(f"dtype policy {source.policy!r} -> {target.policy!r}")
    if source.config is None or target.config is None:
        return differ
    return differ + _diff(source.config, target.config, "")


def _policy(layer: Any) -> str | None:
    policy = getattr(layer, "dtype_policy", None)
    return getattr(policy, "name", None)


def _diff(a: Any, b: Any, path: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if (not path and key in _NAMES) or key.endswith(_TRAINING_ONLY):
                continue
            out += _diff(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        return out
    if a != b:
        return [f"{path}: {_short(a)} -> {_short(b)}"]
    return []


def _short(value: Any) -> str:
    if isinstance(value, dict) and "class_name" in value:  # a serialized object: its class and config
        return f"{value['class_name']}({_short(value.get('config'))})" if value.get("config") else value["class_name"]
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
