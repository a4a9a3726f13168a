"""The TensorFlow tensor bundle (``.index`` + ``.data-NNNNN-of-NNNNN``), read and written without TF.

The index is an SSTable (``_sstable``) of ``BundleEntryProto`` messages (``_protos``) keyed by
variable key (slices by ordered code, ``_ordered_code``); tensors are checked with masked CRC32C
(``crc``); string tensors carry varint lengths (``_strings``); a TF2 checkpoint adds an object graph
(``object_graph``).
"""

from __future__ import annotations

from ..._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._protos": ("BundleEntry", "decode_entry", "decode_object_graph", "encode_entry"),
    ".object_graph": ("OBJECT_GRAPH_KEY", "VALUE_SUFFIX", "escape", "preferred_paths"),
    ".reader": ("BundleReader", "TensorRecord", "data_file_name"),
    ".writer": ("WRITE_BLOCK_BYTES", "BundleWriter", "WrittenTensor", "encode_array", "write_index"),
})
