"""Declared initializers for entries a transform gives no source (TF's ``VocabInfo(backup_initializer=...)``):
a vocabulary remap's new and OOV rows (``new_row:``), an overlap copy's entries outside the region
(``new_values:``). Declared in the rules as a mapping with one key (``{random_uniform: {...}}``), described
and checked against the target's dtype at plan time, and computed here with NumPy.

The value of an entry depends only on the seed and the entry's place in the whole target (its row-major
flat index): the target is cut into blocks of :data:`BLOCK` entries, block ``b`` drawn from
``numpy.random.default_rng([seed, b])``. Whoever asks for an entry (a strategy holding the whole value, the
stream one chunk of rows at a time) gets the same number, and only the blocks holding entries without a
source are drawn. These are NumPy's random streams, not TF's: the same distributions, not the same numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ..formats.dtypes import by_name
from .onekey import OneKey

if TYPE_CHECKING:
    import numpy as np

__all__ = ["BLOCK", "Initializer"]

BLOCK = 1024  # entries drawn per generator: a 1024-wide embedding row is one block
_FROZEN = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class RandomUniform(BaseModel):
    """Uniform in ``[minval, maxval)``, as TF's ``random_uniform_initializer`` (same defaults)."""

    model_config = _FROZEN
    minval: float = -0.05
    maxval: float = 0.05
    seed: int = Field(0, ge=0, description="The same seed gives the same values (NumPy's stream, not TF's).")

    def model_post_init(self, _context: Any) -> None:
        if self.maxval < self.minval:
            raise ValueError(f"random_uniform: maxval {self.maxval} is below minval {self.minval}")


class RandomNormal(BaseModel):
    """Normal with ``mean`` and ``stddev``, as TF's ``random_normal_initializer`` (same defaults)."""

    model_config = _FROZEN
    mean: float = 0.0
    stddev: float = Field(0.05, ge=0.0)
    seed: int = Field(0, ge=0, description="The same seed gives the same values (NumPy's stream, not TF's).")


class Initializer(OneKey):
    """One initializer, written as a mapping with one key: ``{constant: 0.42}``, ``{random_uniform: {minval,
    maxval, seed}}``, ``{random_normal: {mean, stddev, seed}}`` or ``{truncated_normal: {mean, stddev, seed}}``
    (TF's truncation: values beyond two standard deviations are drawn again)."""

    WHAT = "an initializer"
    constant: float | None = None
    random_uniform: RandomUniform | None = None
    random_normal: RandomNormal | None = None
    truncated_normal: RandomNormal | None = None

    def describe(self) -> str:
        """In words for a plan row: ``random_uniform(-0.05, 0.05, seed 7)``."""
        if self.constant is not None:
            return f"constant({self.constant:g})"
        if self.random_uniform is not None:
            u = self.random_uniform
            return f"random_uniform({u.minval:g}, {u.maxval:g}, seed {u.seed})"
        n = self.random_normal or self.truncated_normal
        assert n is not None
        return f"{self.kind}(mean {n.mean:g}, stddev {n.stddev:g}, seed {n.seed})"

    def problem(self, dtype: str | None) -> str | None:
        """Why this initializer cannot fill a variable of ``dtype`` (None: it can, or the dtype is unknown)."""
        import numpy as np

        if dtype is None:
            return None
        kind = by_name(dtype).kind
        if self.constant is None:
            return None if kind == "float" else f"{self.describe()} fills floating-point variables; the target is {dtype}"
        if kind in ("string", "other"):
            return f"{self.describe()} fills numeric variables; the target is {dtype}"
        with np.errstate(all="ignore"):
            kept = complex(np.asarray(self.constant).astype(by_name(dtype).numpy)).real
        # a float target rounds the constant (0.42 in float32); an integer or bool target must hold it exactly
        fits = np.isfinite(kept) == np.isfinite(self.constant) if kind in ("float", "complex") else kept == self.constant
        return None if fits else f"{self.describe()} does not fit {dtype} (it would be {kept:g})"

    def values_at(self, flat: np.ndarray) -> np.ndarray:
        """The values (float64) of the entries at row-major flat indices ``flat`` of the whole target."""
        import numpy as np

        flat = np.asarray(flat, dtype=np.int64)
        if self.constant is not None:
            return np.full(flat.shape, self.constant, dtype=np.float64)
        out = np.empty(flat.shape, dtype=np.float64)
        blocks = flat // BLOCK
        order = np.argsort(blocks, kind="stable")
        starts = np.flatnonzero(np.diff(blocks[order], prepend=-1))
        for a, b in zip(starts, np.append(starts[1:], len(order))):
            at = order[a:b]
            out[at] = self._block(int(blocks[at[0]]))[flat[at] % BLOCK]
        return out

    def _block(self, b: int) -> np.ndarray:
        """The values of block ``b``: its own generator, so that any block is drawn without the others."""
        import numpy as np

        if self.random_uniform is not None:
            u = self.random_uniform
            rng = np.random.default_rng([u.seed, b])
            return u.minval + (u.maxval - u.minval) * rng.random(BLOCK)
        n = self.random_normal or self.truncated_normal
        assert n is not None
        rng = np.random.default_rng([n.seed, b])
        z = rng.standard_normal(BLOCK)
        if self.truncated_normal is not None:
            far = np.flatnonzero(np.abs(z) > 2.0)
            while len(far):  # drawn again, as TF's truncated normal does
                z[far] = rng.standard_normal(len(far))
                far = far[np.abs(z[far]) > 2.0]
        return n.mean + n.stddev * z
