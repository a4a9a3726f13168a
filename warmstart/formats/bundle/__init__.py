"""The TensorFlow tensor bundle (``.index`` + ``.data-NNNNN-of-NNNNN``), read and written without TF.

The index is an SSTable (``_sstable``) of ``BundleEntryProto`` messages (``_protos``) keyed by
variable key (slices by ordered code, ``_ordered_code``); tensors are checked with masked CRC32C
(``crc``); string tensors carry varint lengths (``_strings``); a TF2 checkpoint adds an object graph
(``object_graph``).
"""

from ._protos import BundleEntry, decode_entry, decode_object_graph, encode_entry
from .object_graph import OBJECT_GRAPH_KEY, VALUE_SUFFIX, escape, preferred_paths
from .reader import BundleReader, TensorRecord, data_file_name
from .writer import WRITE_BLOCK_BYTES, BundleWriter, WrittenTensor, encode_array, write_index

__all__ = [
    "BundleReader", "TensorRecord", "data_file_name",
    "BundleWriter", "WrittenTensor", "encode_array", "write_index", "WRITE_BLOCK_BYTES",
    "BundleEntry", "encode_entry", "decode_entry",
    "OBJECT_GRAPH_KEY", "VALUE_SUFFIX", "escape", "preferred_paths", "decode_object_graph",
]
