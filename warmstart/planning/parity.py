"""The rules' ``verify:`` section: what the parity certificate compares besides the layers the plan copied whole.

Layer parity needs no declaration. ``verify:`` adds outputs to compare end to end (``pairs``: a tensor of the
source's TF1 graph, or a Keras layer or model output, against one of the target's, with where the probe inputs
go), vocabularies whose rows must follow their tokens (``lookups``), the models the certificate builds where a
file holds no structure (``source_model``, ``target_model``, ``source_graph``, ``target_graph``), target layers
left out (``exclude``), and the probes (``probes``, ``seed``, ``npz``). Pure data: nothing here runs a model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .patterns import compile_pattern

__all__ = ["VerifyRules", "OutputPair", "PairInput", "Lookup", "DEFAULT_PROBES", "MAX_PROBES"]

DEFAULT_PROBES = 4  # probe inputs per layer (the batch of each call: 4 sequences of 128 tokens are 512 vectors)
MAX_PROBES = 4096

# defer_build: built with the rules that hold them (one validator for the tree), not at import
_FROZEN = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class PairInput(BaseModel):
    """Where one probe input goes on each side: a placeholder or Keras input by name; the values drawn from its
    spec, or taken from the ``npz`` file's ``array``."""

    model_config = _FROZEN

    source: str | None = Field(None, description="The source's input: a TF1 placeholder ('x:0') or a Keras model input "
                               "name; default: the only one.")
    target: str | None = Field(None, description="The target's input, the same way; default: the only one.")
    array: str | None = Field(None, description="Take the values from this array of the npz file (default: drawn "
                              "from the input's spec, seeded).")
    range: tuple[float, float] | None = Field(None, description="Draw integer inputs in [low, high) (token ids); "
                                              "default: below the vocabulary of the Embedding reading it.")


class OutputPair(BaseModel):
    """Two outputs that must agree: ``source`` and ``target`` each a TF1 graph tensor (``name:0``) or a Keras layer
    (its path, ``encoder/lstm``) or ``output`` (the model's output)."""

    model_config = _FROZEN

    source: str = Field(description="A tensor of the source's TF1 graph ('rnn/transpose_1:0'), a layer of its Keras "
                        "model, or 'output'.")
    target: str = Field(description="A layer of the target's Keras model ('lstm'), 'output', or a TF1 graph tensor.")
    inputs: list[PairInput] = Field(default_factory=list, description="Where each probe input goes; default: the "
                                    "only input of each side.")
    atol: float | None = Field(None, ge=0, description="Absolute tolerance (default: from the dtype: 1e-5 float32).")
    rtol: float | None = Field(None, ge=0, description="Relative tolerance (default: from the dtype: 1e-5 float32).")

    @property
    def label(self) -> str:
        return f"{self.source} ~ {self.target}"


class Lookup(BaseModel):
    """A target variable indexed by a vocabulary (rows, or columns for ``axis: 1``): every surviving token's row in
    the target must be its row in the source, by the two vocabulary files (one token a line). Remapped variables
    of the plan are checked so without a declaration; this declares one the plan copies as it is."""

    model_config = _FROZEN

    target: str = Field(description="Regex over target variable names (whole name).")
    old: str = Field(description="The source's vocabulary file.")
    new: str = Field(description="The target's vocabulary file.")
    axis: Literal[0, 1] = 0

    @field_validator("target")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        compile_pattern(pattern)
        return pattern


class VerifyRules(BaseModel):
    """What the parity certificate checks beyond the layers the plan copies whole (see the module)."""

    model_config = _FROZEN

    layers: bool = Field(True, description="Compare every target layer the plan fills from one source layer (Keras "
                         "on both sides).")
    exclude: list[str] = Field(default_factory=list, description="Regexes over target layer names not to compare "
                               "(changed on purpose); listed as not checked.")
    pairs: list[OutputPair] = Field(default_factory=list, description="Outputs to compare end to end.")
    lookups: list[Lookup] = Field(default_factory=list, description="Variables indexed by a vocabulary the plan does "
                                  "not remap.")
    probes: int = Field(DEFAULT_PROBES, ge=1, le=MAX_PROBES, description="Probe inputs per layer and pair.")
    seed: int = Field(0, ge=0, description="Seed of the probes.")
    npz: str | None = Field(None, description="A .npz file of probe arrays (named by the pairs' inputs).")
    source_model: str | None = Field(None, description="The source's Keras model (.keras or py: builder) where the "
                                     "source file holds no structure; default: source_structure.")
    target_model: str | None = Field(None, description="The target's Keras model (.keras or py: builder) where the "
                                     "target holds none (a .weights.h5 template, a TF2 template checkpoint).")
    source_graph: str | None = Field(None, description="The source's TF1 MetaGraph; default: the .meta beside the "
                                     "checkpoint.")
    target_graph: str | None = Field(None, description="The target's TF1 MetaGraph; default: the target .meta, or "
                                     "the one beside a TF1 template.")

    @field_validator("exclude")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            compile_pattern(p)
        return patterns

    @model_validator(mode="after")
    def _arrays_need_a_file(self) -> "VerifyRules":
        named = [i.array for p in self.pairs for i in p.inputs if i.array]
        if named and self.npz is None:
            raise ValueError(f"pair input array {named[0]!r} needs the npz file that holds it (verify: npz: FILE)")
        return self

    def files(self) -> list[tuple[str, str]]:
        """(role, URL) of every file named here that the certificate reads (models, graphs, vocabularies, npz)."""
        named = [(field, getattr(self, field)) for field in ("source_model", "target_model", "source_graph",
                                                             "target_graph", "npz")]
        named += [("vocabulary", path) for lookup in self.lookups for path in (lookup.old, lookup.new)]
        return [(role, url) for role, url in named if url is not None and not url.startswith("py:")]

    def code(self) -> list[tuple[str, Any]]:
        """(field, value) of the fields that may name a ``py:`` builder."""
        return [("verify.source_model", self.source_model), ("verify.target_model", self.target_model)]
