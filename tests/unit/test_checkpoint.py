from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.verify.checkpoint import Checkpoint, sign, verify
from ccgw.verify.errors import LogError

KEY = Ed25519PrivateKey.generate()
PUB = KEY.public_key().public_bytes_raw()
CP = Checkpoint(origin="ccgw.example/log", size=42, root=bytes(range(32)))


def test_round_trip_and_format() -> None:
    text = sign(CP, KEY, "ccgw-log")
    assert text.startswith("ccgw.example/log\n42\n")
    assert "\n\n\u2014 ccgw-log " in text
    assert verify(text, "ccgw-log", PUB, origin="ccgw.example/log") == CP


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t.replace("\n42\n", "\n43\n"),
        lambda t: t.replace("ccgw.example/log", "evil/log"),
        lambda t: t.split("\n\n")[0] + "\n",
        lambda t: t[:-5] + "AAAA\n",
    ],
)
def test_tampered_checkpoints_fail(mutate) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LogError):
        verify(mutate(sign(CP, KEY, "ccgw-log")), "ccgw-log", PUB, origin="ccgw.example/log")


def test_other_key_or_name_fails() -> None:
    text = sign(CP, Ed25519PrivateKey.generate(), "ccgw-log")
    with pytest.raises(LogError):
        verify(text, "ccgw-log", PUB)
    with pytest.raises(LogError):
        verify(sign(CP, KEY, "other"), "ccgw-log", PUB)
