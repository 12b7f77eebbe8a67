"""The importer's exceptions: one tree, each message one line a user can act on."""

from __future__ import annotations


class ModelImportError(Exception):
    """The model could not be imported; the message says why."""


class MalformedGguf(ModelImportError):
    """The file is not a well-formed GGUF file (truncated, bad magic, offsets out of the file)."""


class UnsupportedGguf(ModelImportError):
    """A well-formed file this importer cannot convert faithfully (architecture, tensor type)."""


class ImportLimitExceeded(ModelImportError):
    """A count or size beyond the limits of ccgw.modelimport.config."""
