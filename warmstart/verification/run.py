"""Making a certificate: the target side first (the output loaded the documented way; every comparable layer and
declared target output computed on its probes), then the source side (the source's model with the source's
values; the same layers and outputs on the same probes), compared. One model is held at a time, so a certificate
costs about one model in memory, not two.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import WarmStartError
from ..formats import KerasWeightsReader
from ..formats.bundle import BundleReader
from ..planning import MAIN_SOURCE, Plan, PlanEntry
from ..planning import VerifyRules
from ..storage import resolve
from .calls import LayerInputs, Profile, call_layer, config_differences, detached, layer_inputs, may_be_random, profile
from .certificate import Certificate, Check, NotChecked, unique
from .compare import LAYER_FACTOR, PAIR_FACTOR, difference, magnitude, tolerance
from .graphs import GraphSide
from .keras_models import KerasSide, source_side, target_side
from .output import OutputFiles
from .pairs import endpoint, read_npz, source_feeds, target_probes
from .probes import draw
from .rows import row_checks
from .spill import Spill
from .units import Unit, model_units, source_unit, unit_problem

__all__ = ["certify"]


@dataclass
class _Layer:
    """A target layer computed on its probes, waiting for its source layer (kept without the layer itself, so
    that the target model is released before the source's is built)."""

    name: str
    variables: tuple[str, ...]
    profile: Profile
    inputs: LayerInputs  # its probes are drawn again from these specs: a probe depends on the seed and the name only
    outputs: tuple[np.ndarray | str, ...]  # a Spill's handle
    finalized: tuple[np.ndarray | str, ...] | None = None  # its outputs once derived state is recomputed


@dataclass
class _Pair:
    index: int
    probes: dict[str, np.ndarray]
    outputs: list[np.ndarray]
    variables: tuple[str, ...]  # the target's variables the target output depends on


@dataclass
class _Certifying:
    plan: Plan
    readers: Mapping[str, Any]
    rules: VerifyRules
    probes: int
    seed: int
    storage_options: dict[str, Any] | None
    checks: list[Check] = field(default_factory=list)
    skipped: list[NotChecked] = field(default_factory=list)
    layers: list[_Layer] = field(default_factory=list)
    pairs: list[_Pair] = field(default_factory=list)
    sides: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        self.spill = Spill()
        self.entries = {e.target: e for e in self.plan.entries}
        self.order = {e.target: i for i, e in enumerate(self.plan.entries)}
        self.arrays = read_npz(self.rules.npz, self.storage_options) if self.rules.npz else None

    # -- the target side ------------------------------------------------------------------------------------------
    def target_phase(self, target: Any, output: OutputFiles) -> None:
        keras_needed = self.rules.layers or self.rules.lookups or any(":" not in p.target for p in self.rules.pairs)
        side = target_side(self.plan, target, self.rules, output, self.storage_options) if keras_needed else None
        if isinstance(side, KerasSide):
            self.sides["target"] = side.described
        elif isinstance(side, str) and self.rules.layers:
            self.skipped.append(NotChecked("(layers)", side))
        if isinstance(side, KerasSide) and self.rules.layers:
            self._target_layers(side)
        self._rows(side if isinstance(side, KerasSide) else None, output)
        graph = self._target_graph(target, output) if any(":" in p.target for p in self.rules.pairs) else None
        try:
            for i, pair in enumerate(self.rules.pairs):
                where = f"verify.pairs[{i}]"
                end = endpoint(graph if ":" in pair.target else side, pair.target, "target", where)
                probes = target_probes(pair, end, self.arrays, self.probes, self.seed, where)
                self.pairs.append(_Pair(i, probes, end.run(probes), end.variables()))
        finally:
            if graph is not None:
                graph.close()

    def _target_layers(self, side: KerasSide) -> None:
        called = []
        for unit in model_units(side.model, side.names, self.order):
            problem = unit_problem(unit, self.entries, self.rules.exclude)
            if problem is None:
                problem = self._compute(unit)
            if problem is not None:
                self.skipped.append(NotChecked(unit.name, problem, "layer", unit.layer_class, unit.variables))
            else:
                called.append(unit.layer)
        stateful = [(p, layer) for p, layer in zip(self.layers, called) if p.profile.derives_state]
        if stateful:  # what the layers would compute had their derived state been recomputed from the variables
            from ..strategies.tf_common import finalize_derived_state

            finalize_derived_state(side.model)
            for p, layer in stateful:
                p.finalized = self.spill.put(call_layer(layer, p.inputs, self._probes(p.name, p.inputs)))
        for p in self.layers:
            p.inputs = detached(p.inputs)

    def _compute(self, unit: Unit) -> str | None:
        """Call ``unit`` on its probes (twice if it draws random numbers: a layer random at call time cannot be
        compared); why not, or None."""
        inputs = layer_inputs(unit.layer)
        if isinstance(inputs, str):
            return f"cannot be probed: {inputs}"
        problem = next((s.problem() for _, s in inputs.specs if s.problem()), None)
        if problem:
            return f"cannot be probed: {problem}"
        arrays = self._probes(unit.name, inputs)
        try:
            first = call_layer(unit.layer, inputs, arrays)
            second = call_layer(unit.layer, inputs, arrays) if may_be_random(unit.layer) else first
        except WarmStartError:
            raise
        except _CALL_ERRORS() as exc:
            return f"cannot be called on probes of its input spec ({type(exc).__name__}: {_first_line(exc)})"
        if second is not first and not difference(first, second, 0.0, 0.0).within:
            return "random at call time: two calls on the same probes with training=False give other outputs"
        self.layers.append(_Layer(unit.name, unit.variables, profile(unit.layer), inputs, self.spill.put(first)))
        return None

    def _probes(self, name: str, inputs: LayerInputs) -> list[np.ndarray]:
        return [draw(spec, self.probes, self.seed, name) for _, spec in inputs.specs]

    def _rows(self, side: KerasSide | None, output: OutputFiles) -> None:
        if not any(e.remap is not None for e in self.plan.entries) and not self.rules.lookups:
            return
        readers = _output_readers(output)

        def target_value(entry: PlanEntry) -> np.ndarray | str:
            if side is not None and entry.target in side.variables:
                return np.asarray(side.variables[entry.target].numpy())
            for reader in readers:
                if entry.target_key in reader.records:
                    return reader.read(entry.target_key)
            return f"the output holds no tensor {entry.target_key!r}"

        checks, skipped = row_checks(self.plan, self.rules.lookups, target_value, self._source_value,
                                     self.storage_options)
        self.checks += checks
        self.skipped += skipped

    def _source_value(self, entry: PlanEntry) -> np.ndarray:
        return self.readers[entry.from_source or MAIN_SOURCE].read(entry.source_key)

    def _target_graph(self, target: Any, output: OutputFiles) -> GraphSide:
        meta = self.rules.target_graph or _beside_meta(target, self.storage_options)
        if meta is None or output.checkpoint is None:
            from ..errors import UsageError

            raise UsageError("verify.pairs: a TF1 target tensor needs the target's graph (verify: target_graph, a "
                             ".meta target, or a TF1 template with its .meta) and a TF checkpoint output")
        self.sides["target graph"] = f"{meta}, the output's checkpoint {output.checkpoint} read into it"
        return GraphSide(meta, BundleReader.at_prefix(resolve(output.checkpoint)), self.storage_options, "the target")

    # -- the source side ------------------------------------------------------------------------------------------
    def source_phase(self) -> None:
        groups: dict[str, list[_Layer]] = {}
        for p in self.layers:
            groups.setdefault(self.entries[p.variables[0]].from_source or MAIN_SOURCE, []).append(p)
        keras_pairs = [pair for pair in self.pairs if ":" not in self.rules.pairs[pair.index].source]
        if keras_pairs:
            groups.setdefault(MAIN_SOURCE, [])
        for name, group in groups.items():
            wanted = {self.entries[v].source for p in group for v in p.variables}
            if name == MAIN_SOURCE and keras_pairs:
                wanted |= set(self.plan.sources[MAIN_SOURCE])
            side = source_side(self.plan, name, self.readers[name], self.rules, sorted(wanted), self.storage_options)
            if isinstance(side, KerasSide):
                self.sides[f"source {name}" if name != MAIN_SOURCE else "source"] = side.described
            self._source_layers(side, name, group)
            if name == MAIN_SOURCE:
                self._source_pairs(side, keras_pairs)
            del side
            gc.collect()
        graph_pairs = [pair for pair in self.pairs if ":" in self.rules.pairs[pair.index].source]
        if graph_pairs:
            meta = self._source_meta()
            self.sides["source graph"] = f"{meta}, the source's values read into it"
            graph = GraphSide(meta, self.readers[MAIN_SOURCE], self.storage_options, "the source")
            try:
                self._source_pairs(graph, graph_pairs)
            finally:
                graph.close()

    def _source_layers(self, side: KerasSide | str, name: str, group: list[_Layer]) -> None:
        if isinstance(side, str):
            self.skipped += [NotChecked(p.name, side, "layer", p.profile.layer_class, p.variables) for p in group]
            return
        order = {n: i for i, n in enumerate(self.plan.sources[name])}
        units = model_units(side.model, side.names, order)
        for p in group:
            found = source_unit(p.variables, self.entries, units)
            result = NotChecked(p.name, found, "layer", p.profile.layer_class, p.variables) \
                if isinstance(found, str) else self._layer_check(p, found)
            (self.checks if isinstance(result, Check) else self.skipped).append(result)  # type: ignore[arg-type]

    def _layer_check(self, p: _Layer, source: Unit) -> Check | NotChecked:
        rows = [self.entries[v] for v in p.variables]
        try:
            want = call_layer(source.layer, p.inputs, self._probes(p.name, p.inputs))
        except WarmStartError:
            raise
        except _CALL_ERRORS() as exc:
            return self._check(p, source, None, (0.0, 0.0), f"the source layer cannot take the target layer's "
                               f"probes ({type(exc).__name__}: {_first_line(exc)})")
        if not any(np.isfinite(np.asarray(x, dtype=np.float64)).any() for x in want):
            return NotChecked(p.name, "the source layer's outputs on the probes are not finite (NaN, inf): nothing to "
                              "compare", "layer", p.profile.layer_class, p.variables)
        if all(e.action == "copy" for e in rows):
            atol, rtol = 0.0, 0.0
        else:
            dtypes = {d for e in rows for d in (e.dtype, e.source_dtype) if d}
            dtypes |= {str(source.layer.compute_dtype), p.profile.compute_dtype}
            atol, rtol = tolerance(dtypes, magnitude(want), LAYER_FACTOR)
        diff = difference(want, self.spill.get(p.outputs), atol, rtol)
        cause = None if diff.within else self._cause(p, source, want, atol, rtol) or diff.cause
        return self._check(p, source, diff, (atol, rtol), cause)

    def _check(self, p: _Layer, source: Unit, diff, tol: tuple[float, float], cause: str | None) -> Check:
        casts = sorted({f"{e.source_dtype} -> {e.dtype}" for v in p.variables
                        if (e := self.entries[v]).action == "cast"})
        note = f"cast {', '.join(casts)}" if casts else None
        if diff is None:
            return Check("layer", p.name, source.name, False, float("inf"), float("inf"), *tol, 0,
                         p.profile.layer_class, cause, note, p.variables)
        return Check("layer", p.name, source.name, diff.within, diff.max_abs, diff.max_rel, *tol, diff.compared,
                     p.profile.layer_class, cause, note, p.variables)

    def _cause(self, p: _Layer, source: Unit, want: list[np.ndarray], atol: float, rtol: float) -> str | None:
        """Why a layer differs, where the certificate can tell."""
        if p.finalized is not None and difference(want, self.spill.get(p.finalized), atol, rtol).within:
            return (f"stale derived state: {', '.join(p.profile.derives_state)} computes with state its variables no "
                    "longer give (it agrees once finalize_state() runs): load the output with model.load_weights(...)")
        inner = [c.target for c in self.checks if not c.passed and c.kind == "layer"
                 and set(c.variables) < set(p.variables)]
        if inner:
            return f"its layer {inner[0]!r} differs"
        differ = config_differences(profile(source.layer), p.profile)
        if differ:
            return "configuration differs: " + "; ".join(differ[:3]) + (" ..." if len(differ) > 3 else "")
        return "the same configuration computes other values from the copied weights"

    def _source_pairs(self, side: Any, pending: list[_Pair]) -> None:
        for p in pending:
            pair, where = self.rules.pairs[p.index], f"verify.pairs[{p.index}]"
            end = endpoint(side, pair.source, "source", where)
            try:
                want = end.run(source_feeds(pair, end, p.probes, where))
            except WarmStartError:
                raise
            except _CALL_ERRORS() as exc:
                self.checks.append(Check("pair", pair.target, pair.source, False, float("inf"), float("inf"), 0.0, 0.0,
                                         0, cause=f"the source cannot compute it ({_first_line(exc)})",
                                         variables=p.variables))
                continue
            self.checks.append(_pair_check(pair, want, p.outputs, p.variables))

    def _source_meta(self) -> str:
        meta = self.rules.source_graph or _beside_meta(self.readers[MAIN_SOURCE], self.storage_options)
        if meta is None:
            from ..errors import UsageError

            raise UsageError("verify.pairs: a TF1 source tensor needs the source's graph: the .meta beside a TF1 "
                             "checkpoint, or verify: source_graph")
        return meta


def _pair_check(pair, want: list[np.ndarray], got: list[np.ndarray], variables: tuple[str, ...]) -> Check:
    dtypes = {str(np.asarray(x).dtype) for x in (*want, *got)}
    default = tolerance(dtypes, magnitude(want), PAIR_FACTOR)
    atol = pair.atol if pair.atol is not None else default[0]
    rtol = pair.rtol if pair.rtol is not None else default[1]
    diff = difference(want, got, atol, rtol)
    return Check("pair", pair.target, pair.source, diff.within, diff.max_abs, diff.max_rel, atol, rtol, diff.compared,
                 cause=None if diff.within else diff.cause or "the outputs differ beyond the tolerance",
                 variables=variables)


def _beside_meta(source: Any, storage_options: dict[str, Any] | None) -> str | None:
    """The ``.meta`` beside a TF1 checkpoint (its reader, or a template's URL), or a ``.meta`` target itself."""
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if isinstance(source, str):
        from ..formats import resolve_checkpoint

        return source if source.endswith(".meta") else resolve_checkpoint(source, storage_options).url + ".meta"
    reader = getattr(source, "source", source)  # a checkpoint's reader (or one reading a cache's copy first)
    return None if isinstance(reader, KerasWeightsReader) else reader.prefix.url + ".meta"


def _output_readers(output: OutputFiles) -> list[Any]:
    readers: list[Any] = []
    if output.weights:
        readers.append(KerasWeightsReader(output.weights))
    if output.checkpoint:
        readers.append(BundleReader.at_prefix(resolve(output.checkpoint)))
    return readers


def _CALL_ERRORS() -> tuple[type[BaseException], ...]:
    import tensorflow as tf

    return (ValueError, TypeError, KeyError, IndexError, NotImplementedError, tf.errors.OpError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def certify(plan: Plan, readers: Mapping[str, Any] | Any, target: Any, output: OutputFiles,
            storage_options: dict[str, Any] | None = None, probes: int | None = None,
            seed: int | None = None) -> Certificate:
    """The parity certificate of ``output`` (a transfer of ``plan`` from ``readers``, the sources' readers by name,
    into ``target``). ``probes``/``seed``: instead of the rules' ``verify:`` values. Raises :class:`UsageError`
    for a ``verify:`` declaration that cannot be run (an unknown tensor or layer, inputs that cannot be fed) and
    :class:`InputError` when the output cannot be loaded into the target model."""
    started = time.perf_counter()
    rules = plan.rules.verify or VerifyRules()
    if probes is not None and probes < 1:
        from ..errors import UsageError

        raise UsageError(f"probes: at least 1 probe input per layer. Received: {probes}")
    readers = getattr(readers, "readers", readers)
    readers = readers if isinstance(readers, Mapping) else {MAIN_SOURCE: readers}
    run = _Certifying(plan, readers, rules, rules.probes if probes is None else probes,
                      rules.seed if seed is None else seed, storage_options)
    try:
        run.target_phase(target, output)
        gc.collect()
        run.source_phase()
    finally:
        run.spill.close()
    return Certificate(tuple(run.checks), unique(run.skipped), run.probes, run.seed, plan.digest, output.url,
                       time.perf_counter() - started, run.sides)
