"""Storage: URLs through fsspec, byte ranges, local zero-copy I/O, and publishing outputs.

The lowest wing: it knows bytes and objects, not checkpoints (the names a format puts in an output come to
it as an :class:`OutputLayout`). Every other wing reaches storage
through the names below.
"""

from .aside import written_aside
from .bounded import (
    COMPRESSION_RATIO,
    CONFIG_BYTES,
    INDEX_BYTES,
    LIMITS,
    MEMBER_BYTES,
    METADATA_BYTES,
    NESTING,
    RULES_BYTES,
    RULES_ENTRIES,
    VOCAB_BYTES,
    Limit,
    check_nesting,
    read_limited,
    require_regular_file,
)
from .localio import MappedBlock, MappedSource, kernel_copy
from .locations import Location, is_transient, object_size, read_bytes, read_range, resolve
from .publish import (
    INCOMPLETE_MARKER,
    MANIFEST,
    PART_PREFIX,
    OutputDir,
    OutputLayout,
    canonical_path,
    check_output,
    check_output_location,
    publish_directory,
    read_manifest,
    refuse_unfinished,
)
from .ranges import Block, Piece, fetch_blocks, plan_blocks
from .versions import object_version

__all__ = [
    "Location", "resolve", "read_bytes", "read_range", "object_size", "object_version", "is_transient",
    "Piece", "Block", "plan_blocks", "fetch_blocks",
    "MappedSource", "MappedBlock", "kernel_copy",
    "OutputDir", "OutputLayout", "MANIFEST", "INCOMPLETE_MARKER", "PART_PREFIX", "canonical_path",
    "check_output", "check_output_location", "publish_directory",
    "read_manifest", "refuse_unfinished", "written_aside",
    "Limit", "LIMITS", "read_limited", "require_regular_file", "check_nesting", "RULES_BYTES", "RULES_ENTRIES",
    "VOCAB_BYTES", "CONFIG_BYTES", "NESTING", "INDEX_BYTES", "METADATA_BYTES", "MEMBER_BYTES", "COMPRESSION_RATIO",
]
