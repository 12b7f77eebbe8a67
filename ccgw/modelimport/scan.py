"""A bounded walk over a GGUF header, before the `gguf` package's reader sees the file.

The reader trusts the counts it reads (it would loop over 2^60 metadata items, or build a list of
every string of a huge array): here every count, length and offset is checked against the file's
size and the limits of ccgw.modelimport.config, and every tensor type against the types we can
dequantize, so a hostile or damaged file fails with one clear error before real work starts.

Layout (GGUF v2/v3, little-endian): "GGUF", u32 version, u64 tensor count, u64 key/value count;
key/value pairs (string key, u32 type, value); tensor infos (string name, u32 dims, u64 × dims,
u32 type, u64 offset); padding to the alignment; tensor data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ccgw.modelimport import config as lim
from ccgw.modelimport.errors import ImportLimitExceeded, MalformedGguf, UnsupportedGguf

# value type → fixed size in bytes (8 = string, 9 = array are variable)
_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_UINT32 = 4

# ggml type id → (name, elements per block, bytes per block) for the types we dequantize
TENSOR_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    30: ("BF16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]  # GGUF order: the fastest-varying dimension first
    type_name: str
    offset: int  # from the start of the data section
    n_bytes: int


@dataclass(frozen=True)
class Header:
    version: int
    tensors: tuple[TensorInfo, ...]
    data_start: int
    file_bytes: int


class _Reader:
    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size, self.pos = f, size, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise MalformedGguf(f"the file is truncated (in {what} at byte {self.pos})")
        if self.pos + n > lim.GGUF_HEADER_BYTES_MAX:
            raise ImportLimitExceeded(
                f"the GGUF header is larger than {lim.GGUF_HEADER_BYTES_MAX} bytes"
            )
        data = self.f.read(n)
        if len(data) != n:
            raise MalformedGguf(f"the file is truncated (in {what} at byte {self.pos})")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise MalformedGguf(f"the file is truncated (in {what} at byte {self.pos})")
        if self.pos + n > lim.GGUF_HEADER_BYTES_MAX:
            raise ImportLimitExceeded(
                f"the GGUF header is larger than {lim.GGUF_HEADER_BYTES_MAX} bytes"
            )
        self.f.seek(n, 1)
        self.pos += n

    def u32(self, what: str) -> int:
        return int(struct.unpack("<I", self.take(4, what))[0])

    def u64(self, what: str) -> int:
        return int(struct.unpack("<Q", self.take(8, what))[0])

    def string(self, what: str) -> bytes:
        n = self.u64(what)
        if n > lim.GGUF_STRING_BYTES_MAX:
            raise ImportLimitExceeded(
                f"{what}: a string of {n} bytes (limit {lim.GGUF_STRING_BYTES_MAX} bytes)"
            )
        return self.take(n, what)

    def value(self, vtype: int, what: str, depth: int = 0) -> int | None:
        """Skip one value; returns it when it is an unsigned integer (for general.alignment)."""
        if vtype in _SCALAR_BYTES:
            raw = self.take(_SCALAR_BYTES[vtype], what)
            return int(struct.unpack("<I", raw)[0]) if vtype == _UINT32 else None
        if vtype == _STRING:
            self.string(what)
            return None
        if vtype == _ARRAY and depth == 0:
            itype, count = self.u32(what), self.u64(what)
            if count > lim.GGUF_ARRAY_ITEMS_MAX:
                raise ImportLimitExceeded(
                    f"{what}: an array of {count} items (limit {lim.GGUF_ARRAY_ITEMS_MAX} items)"
                )
            if itype in _SCALAR_BYTES:
                self.skip(count * _SCALAR_BYTES[itype], what)
            else:
                for _ in range(count):
                    self.value(itype, what, depth + 1)
            return None
        raise MalformedGguf(f"{what}: unknown metadata value type {vtype}")


def scan(path: Path) -> Header:
    """Check the header of the GGUF file at `path` against the limits; MalformedGguf,
    UnsupportedGguf or ImportLimitExceeded with the reason otherwise."""
    size = path.stat().st_size
    if size > lim.GGUF_FILE_BYTES_MAX:
        raise ImportLimitExceeded(
            f"{path.name} is {size} bytes (limit {lim.GGUF_FILE_BYTES_MAX} bytes)"
        )
    with path.open("rb") as f:
        r = _Reader(f, size)
        if f.read(4) != b"GGUF":
            raise MalformedGguf("not a GGUF file (it does not start with GGUF)")
        r.pos = 4
        version = r.u32("the version")
        if version not in (2, 3):
            raise UnsupportedGguf(f"GGUF version {version} (supported: 2, 3)")
        n_tensors, n_kv = r.u64("the tensor count"), r.u64("the metadata count")
        if n_tensors > lim.GGUF_TENSORS_MAX:
            raise ImportLimitExceeded(
                f"the header claims {n_tensors} tensors (limit {lim.GGUF_TENSORS_MAX})"
            )
        if n_kv > lim.GGUF_KV_MAX:
            raise ImportLimitExceeded(
                f"the header claims {n_kv} metadata entries (limit {lim.GGUF_KV_MAX})"
            )
        alignment = 32
        for _ in range(n_kv):
            key = r.string("a metadata key").decode("utf-8", "replace")
            vtype = r.u32(f"metadata {key!r}")
            v = r.value(vtype, f"metadata {key!r}")
            if key == "general.alignment":
                if v is None or v == 0 or v & (v - 1) or v > 1 << 16:
                    raise MalformedGguf("general.alignment must be a power of two up to 65536")
                alignment = v
        infos = [_tensor_info(r) for _ in range(n_tensors)]
        data_start = -(-r.pos // alignment) * alignment
    data_bytes = size - data_start
    if data_bytes < 0:
        raise MalformedGguf("the file is truncated (no tensor data)")
    names = set()
    for t in infos:
        if t.name in names:
            raise MalformedGguf(f"tensor {t.name!r} appears twice")
        names.add(t.name)
        if t.offset % alignment or t.offset + t.n_bytes > data_bytes:
            raise MalformedGguf(
                f"tensor {t.name!r} lies outside the file (the file is truncated or damaged)"
            )
    return Header(version, tuple(infos), data_start, size)


def _tensor_info(r: _Reader) -> TensorInfo:
    name = r.string("a tensor name").decode("utf-8", "replace")
    n_dims = r.u32(f"tensor {name!r}")
    if not 1 <= n_dims <= lim.GGUF_DIMS_MAX:
        raise ImportLimitExceeded(
            f"tensor {name!r} has {n_dims} dimensions (1..{lim.GGUF_DIMS_MAX} allowed)"
        )
    dims = tuple(r.u64(f"tensor {name!r}") for _ in range(n_dims))
    elements = 1
    for d in dims:
        if d == 0:
            raise MalformedGguf(f"tensor {name!r} has a zero dimension")
        elements *= d
        if elements > lim.TENSOR_ELEMENTS_MAX:
            raise ImportLimitExceeded(
                f"tensor {name!r} has shape {dims} (limit {lim.TENSOR_ELEMENTS_MAX} elements)"
            )
    ttype = r.u32(f"tensor {name!r}")
    if ttype not in TENSOR_TYPES:
        raise UnsupportedGguf(
            f"tensor {name!r} has ggml type {ttype}, which this importer does not dequantize "
            f"(supported: {', '.join(t[0] for t in TENSOR_TYPES.values())})"
        )
    type_name, block, block_bytes = TENSOR_TYPES[ttype]
    if dims[0] % block:
        raise MalformedGguf(f"tensor {name!r}: {dims[0]} is not a multiple of {type_name} blocks")
    offset = r.u64(f"tensor {name!r}")
    return TensorInfo(name, dims, type_name, offset, elements // block * block_bytes)
