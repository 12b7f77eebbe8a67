"""Authenticated answer chunks: the stream the worker seals and the client opens.

- key   = HKDF-SHA256(response_key, salt=answer_salt, info=encode("ccgw/v1/answer-key", job_id));
          the worker draws a fresh answer_salt per run, so a replayed request can never reuse a
          (key, nonce) pair even if a replay check were bypassed.
- nonce = 4 zero bytes || 8-byte big-endian chunk counter (chunk i must arrive as index i).
- aad   = encode("ccgw/v1/chunk", job_id, counter, final flag): a chunk moved, dropped, duplicated
          or re-marked as final fails authentication, and a stream that ends without a final chunk
          is truncated.
- Plaintexts are framed and padded to a multiple of limits.CHUNK_PAD_BYTES.
- The running answer digest covers (index, final, ciphertext) of every chunk; the receipt names it
  and the gateway recomputes it over the bytes it relayed.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ccgw.verify import limits
from ccgw.verify.encoding import fields, u64
from ccgw.verify.errors import DecryptError, LimitError, StreamError
from ccgw.verify.hpke import pad, unpad

ANSWER_SALT_BYTES = 32


def chunk_key(response_key: bytes, answer_salt: bytes, job_id: bytes) -> bytes:
    if len(response_key) != 32 or len(answer_salt) != ANSWER_SALT_BYTES:
        raise StreamError("response key and answer salt must be 32 bytes each")
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=answer_salt,
        info=fields("ccgw/v1/answer-key", job_id),
    ).derive(response_key)


def _nonce(index: int) -> bytes:
    return bytes(4) + u64(index)


def _aad(job_id: bytes, index: int, final: bool) -> bytes:
    return fields("ccgw/v1/chunk", job_id, u64(index), b"\x01" if final else b"\x00")


class AnswerDigest:
    """Running SHA-256 over sealed chunks, in order."""

    def __init__(self) -> None:
        self._h = hashlib.sha256(fields("ccgw/v1/answer"))
        self.count = 0
        self.finished = False

    def update(self, index: int, ciphertext: bytes, final: bool) -> None:
        if self.finished:
            raise StreamError("chunk after the final chunk")
        if index != self.count:
            raise StreamError(f"chunk {index} arrived where chunk {self.count} was expected")
        self._h.update(fields("chunk", u64(index), b"\x01" if final else b"\x00", ciphertext))
        self.count += 1
        self.finished = final

    def hexdigest(self) -> str:
        return self._h.hexdigest()


class ChunkSealer:
    """Worker side: seal answer pieces in order."""

    def __init__(self, response_key: bytes, answer_salt: bytes, job_id: bytes) -> None:
        self._aead = ChaCha20Poly1305(chunk_key(response_key, answer_salt, job_id))
        self._job_id = job_id
        self.digest = AnswerDigest()

    def seal(self, plaintext: bytes, final: bool) -> tuple[int, bytes]:
        if len(plaintext) > limits.CHUNK_PLAINTEXT_BYTES_MAX - limits.CHUNK_PAD_BYTES:
            raise LimitError("answer chunk plaintext too large")
        if self.digest.count >= limits.ANSWER_CHUNKS_MAX:
            raise LimitError("too many answer chunks")
        index = self.digest.count
        padded = pad(plaintext, _chunk_buckets(len(plaintext)))
        ct = self._aead.encrypt(_nonce(index), padded, _aad(self._job_id, index, final))
        self.digest.update(index, ct, final)
        return index, ct


class ChunkOpener:
    """Client side: open chunks, refusing any gap, reorder, duplicate or trailing chunk."""

    def __init__(self, response_key: bytes, answer_salt: bytes, job_id: bytes) -> None:
        self._aead = ChaCha20Poly1305(chunk_key(response_key, answer_salt, job_id))
        self._job_id = job_id
        self.digest = AnswerDigest()

    def open(self, index: int, ciphertext: bytes, final: bool) -> bytes:
        if len(ciphertext) > limits.CHUNK_CIPHERTEXT_BYTES_MAX:
            raise LimitError("answer chunk too large")
        if self.digest.finished:
            raise StreamError("chunk after the final chunk")
        if index != self.digest.count:
            raise StreamError(f"chunk {index} arrived where chunk {self.digest.count} was expected")
        try:
            padded = self._aead.decrypt(_nonce(index), ciphertext, _aad(self._job_id, index, final))
        except InvalidTag as exc:
            raise DecryptError(f"answer chunk {index} fails authentication") from exc
        self.digest.update(index, ciphertext, final)
        return unpad(padded)

    def finish(self) -> str:
        """Call when the stream ends: raises if no final chunk came. Returns the answer digest."""
        if not self.digest.finished:
            raise StreamError(
                f"answer stream truncated after {self.digest.count} chunks (no final chunk)"
            )
        return self.digest.hexdigest()


def _chunk_buckets(n: int) -> tuple[int, ...]:
    size = ((4 + n + limits.CHUNK_PAD_BYTES - 1) // limits.CHUNK_PAD_BYTES) * limits.CHUNK_PAD_BYTES
    return (size,)
