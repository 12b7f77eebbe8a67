"""Import a GGUF model (llama.cpp's single-file format) into the Hugging Face layout the worker's
engine loads: `ccgw model import FILE.gguf DIR`.

This runs OUTSIDE the trusted worker, on the provider's side: the worker never parses GGUF, it only
loads a digest-pinned directory of safetensors, JSON and a tokenizer.json (docs/adr/0013). The
importer is still written for hostile input: a bounded pre-scan of the header refuses absurd counts,
sizes and unknown tensor types before anything is read, and tensors are dequantized and written one
at a time, so memory stays within one tensor (limits: ccgw.modelimport.config).

    config.py   every limit, with its unit
    errors.py   ModelImportError and its subclasses
    scan.py     the bounded header pre-scan (before the gguf package's reader sees the file)
    gguf_llama.py  GGUF → config.json, model.safetensors, tokenizer.json, tokenizer_config.json
"""

from __future__ import annotations

from ccgw.modelimport.errors import ModelImportError
from ccgw.modelimport.gguf_llama import ImportResult, import_gguf

__all__ = ["ImportResult", "ModelImportError", "import_gguf"]
