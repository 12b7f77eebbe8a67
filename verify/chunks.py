"""Authenticated answer chunks: the stream the worker seals and the client opens.

- key   = HKDF-SHA256(response_key, salt=answer_salt, info=encode("ccgw/v1/answer-key", job_id));
          the worker draws a fresh answer_salt per run, so a replayed request can never reuse a
          (key, nonce) pair even if a replay check were bypassed.
- nonce = 4 zero bytes || 8-byte big-endian chunk counter (chunk i must arrive as index i).
- aad   = encode("ccgw/v1/chunk", job_id, counter, final flag): a chunk moved, dropped, duplicated
          or re-marked as final fails authentication, and a stream that ends without a final chunk
          is truncated.
- Plaintexts are framed and padded to a multiple of limits.CHUNK_PAD_BYTES.
- The running answer digest starts with the answer salt and covers (index, final, ciphertext) of
  every chunk; the receipt names it and the gateway recomputes it over the bytes it relayed. The
  salt is what the client needs (with its response key) to open the answer, so a receipt can only
  be settled for the salt the gateway relayed to the client's stream.
- A refusal the worker sends after opening a request (its reason may describe the prompt, e.g. its
  token count) travels sealed too: key = HKDF(response_key, salt=detail_salt,
  info=encode("ccgw/v1/refusal-key", job_id)), one message, padded like a chunk. The gateway sees
  only the failure code.
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
    """Running SHA-256 over the answer salt, then the sealed chunks in order."""

    def __init__(self, answer_salt: bytes) -> None:
        if len(answer_salt) != ANSWER_SALT_BYTES:
            raise StreamError(f"answer salt must be {ANSWER_SALT_BYTES} bytes")
        self._h = hashlib.sha256(fields("ccgw/v1/answer", answer_salt))
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
        self.digest = AnswerDigest(answer_salt)

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
        self.digest = AnswerDigest(answer_salt)

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


_REFUSAL_NONCE = bytes(12)  # the key is fresh per detail_salt and seals exactly one message


def _refusal_aead(response_key: bytes, detail_salt: bytes, job_id: bytes) -> ChaCha20Poly1305:
    if len(response_key) != 32 or len(detail_salt) != ANSWER_SALT_BYTES:
        raise StreamError("response key and refusal salt must be 32 bytes each")
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=detail_salt,
        info=fields("ccgw/v1/refusal-key", job_id),
    ).derive(response_key)
    return ChaCha20Poly1305(key)


def seal_refusal(
    response_key: bytes, detail_salt: bytes, job_id: bytes, code: str, text: str
) -> bytes:
    """Worker side: the reason for a refusal, readable only by the client (code bound in AAD)."""
    data = text.encode()[: limits.REFUSAL_TEXT_BYTES_MAX]
    padded = pad(data, _chunk_buckets(len(data)))
    aad = fields("ccgw/v1/refusal", job_id, code.encode())
    return _refusal_aead(response_key, detail_salt, job_id).encrypt(_REFUSAL_NONCE, padded, aad)


def open_refusal(
    response_key: bytes, detail_salt: bytes, job_id: bytes, code: str, sealed: bytes
) -> str:
    """Client side: the worker's reason, or DecryptError/LimitError/MalformedError."""
    if len(sealed) > limits.REFUSAL_SEALED_BYTES_MAX:
        raise LimitError("sealed refusal too large")
    aad = fields("ccgw/v1/refusal", job_id, code.encode())
    try:
        padded = _refusal_aead(response_key, detail_salt, job_id).decrypt(
            _REFUSAL_NONCE, sealed, aad
        )
    except InvalidTag as exc:
        raise DecryptError("sealed refusal fails authentication") from exc
    return unpad(padded).decode("utf-8", errors="replace")
