"""Collateral a verifier holds besides the evidence (see protos/ccgw/v1/collateral.proto): CRLs,
OCSP responses,
Intel TDX TCB info and QE identity, and the Intel signing chain for them. It comes from the policy's
files, a directory given to a command, or the gateway's cache (untrusted: every item is verified to
a pinned root where it is used). Sizes and counts are bounded; CRLs are parsed once, lazily; a CRL
that does not parse is set aside with its reason rather than failing the whole set.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.x509 import ocsp

from ccgw.protos.ccgw.v1 import collateral_pb2 as cpb
from ccgw.verify import limits
from ccgw.verify.attestation.crl import load_crl
from ccgw.verify.attestation.ocsp import load_response
from ccgw.verify.errors import LimitError, VerifyError


@dataclass(frozen=True)
class Collateral:
    crls: tuple[bytes, ...] = ()
    tdx_tcb_infos: tuple[bytes, ...] = ()
    tdx_qe_identities: tuple[bytes, ...] = ()
    intel_signing_chains: tuple[bytes, ...] = ()
    ocsp_responses: tuple[bytes, ...] = ()  # DER OCSP responses (NVIDIA device and RIM certs)
    # Where it came from ("policy", "gateway", a directory): shown in reports.
    sources: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        items = (*self.crls, *self.tdx_tcb_infos, *self.tdx_qe_identities)
        items = (*items, *self.intel_signing_chains, *self.ocsp_responses)
        if len(items) > limits.COLLATERAL_ITEMS_MAX:
            raise LimitError(f"more than {limits.COLLATERAL_ITEMS_MAX} collateral items")
        if any(len(i) > limits.COLLATERAL_ITEM_BYTES_MAX for i in items):
            raise LimitError(f"a collateral item exceeds {limits.COLLATERAL_ITEM_BYTES_MAX} bytes")
        if sum(len(i) for i in items) > limits.COLLATERAL_BYTES_MAX:
            raise LimitError(f"collateral exceeds {limits.COLLATERAL_BYTES_MAX} bytes")

    @property
    def empty(self) -> bool:
        return not (
            self.crls or self.tdx_tcb_infos or self.tdx_qe_identities or self.ocsp_responses
        )

    def merged(self, other: Collateral | None) -> Collateral:
        """Both sets (duplicates once); the result stays within the limits or raises LimitError."""
        if other is None or (other.empty and not other.intel_signing_chains):
            return self

        def union(a: tuple[bytes, ...], b: tuple[bytes, ...]) -> tuple[bytes, ...]:
            return tuple(dict.fromkeys((*a, *b)))

        return Collateral(
            crls=union(self.crls, other.crls),
            tdx_tcb_infos=union(self.tdx_tcb_infos, other.tdx_tcb_infos),
            tdx_qe_identities=union(self.tdx_qe_identities, other.tdx_qe_identities),
            intel_signing_chains=union(self.intel_signing_chains, other.intel_signing_chains),
            ocsp_responses=union(self.ocsp_responses, other.ocsp_responses),
            sources=tuple(dict.fromkeys((*self.sources, *other.sources))),
        )

    @functools.cached_property
    def parsed_crls(self) -> tuple[tuple[x509.CertificateRevocationList, ...], tuple[str, ...]]:
        """(CRLs that parse, one reason per CRL that does not)."""
        good, bad = [], []
        for i, raw in enumerate(self.crls):
            try:
                good.append(load_crl(raw, f"CRL #{i}"))
            except VerifyError as exc:
                bad.append(str(exc))
        return tuple(good), tuple(bad)

    @functools.cached_property
    def parsed_ocsp(self) -> tuple[tuple[ocsp.OCSPResponse, ...], tuple[str, ...]]:
        """(OCSP responses that parse, one reason per response that does not)."""
        good, bad = [], []
        for i, raw in enumerate(self.ocsp_responses):
            try:
                good.append(load_response(raw, f"OCSP response #{i}"))
            except VerifyError as exc:
                bad.append(str(exc))
        return tuple(good), tuple(bad)

    # ---- wire form (the gateway hands its cache to clients with the evidence) ----------------

    def to_proto(self) -> cpb.Collateral:
        return cpb.Collateral(
            crls=self.crls,
            tdx_tcb_info=self.tdx_tcb_infos,
            tdx_qe_identity=self.tdx_qe_identities,
            intel_signing_chain=self.intel_signing_chains,
            ocsp_responses=self.ocsp_responses,
        )

    @classmethod
    def from_proto(cls, msg: cpb.Collateral, source: str = "gateway") -> Collateral:
        return cls(
            crls=tuple(bytes(b) for b in msg.crls),
            tdx_tcb_infos=tuple(bytes(b) for b in msg.tdx_tcb_info),
            tdx_qe_identities=tuple(bytes(b) for b in msg.tdx_qe_identity),
            intel_signing_chains=tuple(bytes(b) for b in msg.intel_signing_chain),
            ocsp_responses=tuple(bytes(b) for b in msg.ocsp_responses),
            sources=(source,) if msg.ByteSize() else (),
        )


def _kind(path: Path, head: bytes) -> str | None:
    name = path.name.lower()
    text = head.lstrip()
    if text.startswith(b'{"tcbInfo"'):
        return "tcb"
    if text.startswith(b'{"enclaveIdentity"'):
        return "qe"
    if name.endswith((".ocsp", ".ors")):
        return "ocsp"
    if text.startswith(b"-----BEGIN X509 CRL") or name.endswith((".crl", ".crl.der")):
        return "crl"
    if text.startswith(b"-----BEGIN CERTIFICATE"):
        return "chain"
    if name.endswith(".der") or "crl" in name:
        return "crl"
    return None


def load_collateral_dir(directory: Path, source: str | None = None) -> Collateral:
    """Every collateral file in `directory`, recognised by content (Intel JSON, PEM CRL or
    certificate chain) or name (*.crl, *.der; *.ocsp / *.ors for DER OCSP responses); other files are ignored. Raises OSError/LimitError."""
    buckets: dict[str, list[bytes]] = {"crl": [], "tcb": [], "qe": [], "chain": [], "ocsp": []}
    for path in sorted(directory.iterdir()):
        if not path.is_file():
            continue
        if path.stat().st_size > limits.COLLATERAL_ITEM_BYTES_MAX:
            raise LimitError(f"{path} exceeds {limits.COLLATERAL_ITEM_BYTES_MAX} bytes")
        data = path.read_bytes()
        kind = _kind(path, data[:64])
        if kind is not None:
            buckets[kind].append(data)
    return Collateral(
        crls=tuple(buckets["crl"]),
        tdx_tcb_infos=tuple(buckets["tcb"]),
        tdx_qe_identities=tuple(buckets["qe"]),
        intel_signing_chains=tuple(buckets["chain"]),
        ocsp_responses=tuple(buckets["ocsp"]),
        sources=(source or str(directory),),
    )
