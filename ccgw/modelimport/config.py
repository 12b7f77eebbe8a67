"""Limits of the GGUF importer (the one place they are set), each with its unit."""

from __future__ import annotations

GGUF_FILE_BYTES_MAX = 64 << 30  # bytes of the .gguf file
GGUF_TENSORS_MAX = 65_536  # tensor infos in the header
GGUF_KV_MAX = 4_096  # metadata key/value pairs in the header
GGUF_STRING_BYTES_MAX = 1 << 20  # bytes of one metadata string or name (a chat template fits)
GGUF_ARRAY_ITEMS_MAX = 1 << 21  # items of one metadata array (vocabularies, merges)
GGUF_HEADER_BYTES_MAX = 512 << 20  # bytes of the whole header (metadata + tensor infos)
GGUF_DIMS_MAX = 4  # dimensions of one tensor
TENSOR_ELEMENTS_MAX = 1 << 31  # elements of one tensor (its float32 copy is 4 bytes each)
MODEL_OUTPUT_BYTES_MAX = 128 << 30  # bytes of the float32 model.safetensors written
VOCAB_TOKENS_MAX = 1 << 20  # tokens in the vocabulary
