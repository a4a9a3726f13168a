"""Storage: URLs through fsspec, byte ranges, local zero-copy I/O, and publishing outputs.

The lowest wing: it knows bytes and objects, not checkpoints (the names a format puts in an output come to
it as an :class:`OutputLayout`). Every other wing reaches storage
through the names below.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".aside": ("written_aside",),
    ".bounded": (
        "COMPRESSION_RATIO", "CONFIG_BYTES", "INDEX_BYTES", "LIMITS", "MEMBER_BYTES", "METADATA_BYTES", "NESTING",
        "RULES_BYTES", "RULES_ENTRIES", "VOCAB_BYTES", "Limit", "check_nesting", "read_limited",
        "require_regular_file",
    ),
    ".localio": ("MappedBlock", "MappedSource", "kernel_copy", "reserve_space"),
    ".locations": ("Location", "is_transient", "object_size", "read_bytes", "read_range", "resolve"),
    ".publish": (
        "INCOMPLETE_MARKER", "MANIFEST", "PART_PREFIX", "OutputDir", "OutputLayout", "canonical_path", "check_output",
        "check_output_location", "publish_directory", "read_manifest", "refuse_unfinished",
    ),
    ".ranges": ("Block", "Piece", "fetch_blocks", "plan_blocks"),
    ".versions": ("object_version",),
})
