"""One exception tree for warmstart; each class maps to one CLI exit code.

Subclasses also inherit the matching built-in (``FileNotFoundError``, ``ValueError``,
``OSError``) so callers that catch built-ins keep working.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CODES",
    "WarmStartError",
    "PlanError",
    "UsageError",
    "InputError",
    "InputNotFoundError",
    "CorruptCheckpointError",
    "TargetError",
    "StorageError",
    "UnsupportedFormatError",
    "InputChangedError",
    "InputLimitError",
    "OutputBusyError",
    "CertificateError",
]


#: Every exit code of the CLI and what it means: the one list (the CLI's help prints it; each error class below
#: names its code).
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "the plan does not satisfy the rules (nothing written)",
    2: "usage error (arguments, rules, a strategy that cannot work for these inputs)",
    3: "an input is missing, unreadable, corrupt or of an unsupported format",
    4: "a storage or output error (output not empty or not writable, an output that reaches an input, an output "
       "another run is writing, an input that changed after it was planned, a Prefect API that does not answer, "
       "the Dask workers that ran a unit all lost)",
    5: "the parity certificate failed: the output does not compute what the source computed where the plan says "
       "it should (nothing published)",
}


class WarmStartError(Exception):
    """Base class of every error warmstart raises on purpose."""

    exit_code = 1


class PlanError(WarmStartError, ValueError):
    """The plan does not satisfy the rules; nothing was written.

    ``plan`` holds the failed :class:`warmstart.planning.Plan` when there is one.
    """

    exit_code = 1

    def __init__(self, message: str, plan=None):
        super().__init__(message)
        self.plan = plan


class UsageError(WarmStartError, ValueError):
    """The call itself is wrong: bad arguments, bad rules, unknown target kind."""

    exit_code = 2


class InputError(WarmStartError):
    """An input is missing, unreadable or corrupt."""

    exit_code = 3


class InputNotFoundError(InputError, FileNotFoundError):
    """An input file, checkpoint or object does not exist."""


class CorruptCheckpointError(InputError, ValueError):
    """A checkpoint file exists but its contents are not a valid tensor bundle (or a TF1 checkpoint's ``.meta``
    beside it cannot name its variables: no MetaGraph, or not the checkpoint's)."""


class UnsupportedFormatError(InputError, ValueError):
    """An input exists but is a kind of file warmstart cannot read there (a Keras file given as a
    source, a MetaGraph given as a source); the message says what it is and what is supported."""


class InputLimitError(InputError, ValueError):
    """An input is not a regular file, or is larger, deeper or more compressed than warmstart's limits
    allow (the message names the limit and the environment variable that raises it)."""


class TargetError(InputError, ValueError):
    """A target (MetaGraph, Keras file, builder, live object) cannot be turned into a signature."""


class StorageError(WarmStartError, OSError):
    """Storage failed (reading or writing), or the output location is not allowed.

    ``transient`` is True when the underlying failure is worth retrying (throttling, 5xx,
    a reset connection, a timeout), as :func:`warmstart.storage.is_transient` judges it.
    """

    exit_code = 4

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient

    def __reduce__(self):  # keeps ``transient`` when the error crosses processes (a Dask worker's)
        return (type(self), (str(self), self.transient))


class InputChangedError(StorageError):
    """An input changed after the plan was made from it (another checkpoint in a source directory, a
    template or file written again): the transfer refuses to copy or to publish it. ``input`` names it
    (a :class:`warmstart.planning.PinnedInput`)."""

    def __init__(self, message: str, input=None):  # noqa: A002 (the plan's word for it)
        super().__init__(message, transient=False)
        self.input = input

    def __reduce__(self):
        return (type(self), (str(self), self.input))


class OutputBusyError(StorageError):
    """Another run, alive, is writing the output (the message names it: host, process, start)."""


class CertificateError(WarmStartError, ValueError):
    """The parity certificate failed: a checked layer or declared output of the output computes something else than
    the source's (or nothing could be checked); nothing was published. ``certificate`` holds the
    :class:`warmstart.verification.Certificate`."""

    exit_code = 5

    def __init__(self, message: str, certificate=None):
        super().__init__(message)
        self.certificate = certificate

    def __reduce__(self):  # keeps the certificate when the error crosses processes (a Prefect result, Dask)
        return (type(self), (str(self), self.certificate))
