"""The one exception tree of the verify package.

Every failure says what was wrong, in words safe to show a caller (no secret, no plaintext)::

    VerifyError
    ├── MalformedError      bytes that do not parse, a size out of range, a bad field
    │   └── PolicyFileError a policy file that is malformed; `problems` lists every problem
    ├── LimitError          a named limit exceeded (bytes, counts, depth)
    ├── SignatureError      a signature that does not verify
    ├── ChainError          a certificate chain that is broken or ends at an unaccepted root
    ├── BindingError        report_data that does not commit to the presented keys/nonce/GPU/models
    ├── FreshnessError      evidence too old, from the future, or answering another nonce
    ├── PolicyError         a verified field that the policy does not allow
    ├── DecryptError        HPKE or AEAD authentication failure
    ├── StreamError         answer chunks missing, reordered, duplicated or truncated
    ├── ReceiptError        a receipt that is forged, malformed or does not match the job
    └── LogError            a Merkle proof or checkpoint that does not verify, or a log that lies
"""

from __future__ import annotations


class VerifyError(Exception):
    """Base of every verification failure. When verify_bundle refuses evidence, the error it
    raises carries the whole attestation report (verify.attestation.report) in `report`."""

    report: object | None = None


class MalformedError(VerifyError):
    pass


class PolicyFileError(MalformedError):
    """A policy file (or dict) that cannot be loaded. `problems` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("policy refused: " + "; ".join(self.problems))


class LimitError(VerifyError):
    pass


class SignatureError(VerifyError):
    pass


class ChainError(VerifyError):
    pass


class BindingError(VerifyError):
    pass


class FreshnessError(VerifyError):
    pass


class PolicyError(VerifyError):
    """A field fails the policy. `problems` lists every failed check, not only the first."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class DecryptError(VerifyError):
    pass


class StreamError(VerifyError):
    pass


class ReceiptError(VerifyError):
    pass


class LogError(VerifyError):
    pass


class DisputeError(VerifyError):
    """A dispute's evidence does not hold together (verify.disputes): refused, never logged."""
