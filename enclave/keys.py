"""The worker's private keys: generated in memory at start, never serialised, never logged.

There is deliberately no method that returns private key bytes, and pickling/copying raises, so no
code path in the worker can export them. Callers get the operations they need (open a sealed
request, sign a receipt) and the public keys.
"""

from __future__ import annotations

from typing import NoReturn

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519

from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify import binding
from ccgw.verify import hpke as vhpke
from ccgw.verify.receipts import Receipt, sign_receipt


def _raw_public(key: x25519.X25519PublicKey | ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes_raw()


class Keyring:
    __slots__ = ("_ed", "_key_id", "_public", "_x25519", "_xwing")

    def __init__(self) -> None:
        self._x25519 = x25519.X25519PrivateKey.generate()
        mk = mlkem.MLKEM768PrivateKey.generate()
        xk = x25519.X25519PrivateKey.generate()
        self._xwing = hpke.MLKEM768X25519PrivateKey(mk, xk)
        self._ed = ed25519.Ed25519PrivateKey.generate()
        self._public = pb.WorkerKeys(
            hpke_x25519=_raw_public(self._x25519.public_key()),
            hpke_mlkem768_x25519=mk.public_key().public_bytes_raw() + _raw_public(xk.public_key()),
            receipt_ed25519=_raw_public(self._ed.public_key()),
        )
        self._key_id = binding.key_id(self._public)

    @property
    def public(self) -> pb.WorkerKeys:
        out = pb.WorkerKeys()
        out.CopyFrom(self._public)
        return out

    @property
    def key_id(self) -> str:
        return self._key_id

    def open_request(
        self, sealed: pb.SealedRequest, header: pb.RoutingHeader
    ) -> vhpke.OpenedRequest:
        key: vhpke.HpkePrivateKey = (
            self._x25519 if header.suite == pb.X25519_SHA256_CHACHA20POLY1305 else self._xwing
        )
        return vhpke.open_request(sealed, key, header)

    def sign(self, receipt: Receipt) -> str:
        return sign_receipt(receipt, self._ed, self._key_id)

    def __repr__(self) -> str:
        return f"Keyring(key_id={self._key_id})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("worker keys cannot be serialised")

    def __copy__(self) -> NoReturn:
        raise TypeError("worker keys cannot be copied")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("worker keys cannot be copied")
