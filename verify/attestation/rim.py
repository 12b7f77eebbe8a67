"""NVIDIA reference integrity manifests (RIMs): signed SWID tags (ISO/IEC 19770-2, TCG RIM
information model) holding the golden measurements of one GPU driver or one VBIOS.

verify_rim, in order:
 1. bounded, hostile-safe XML parse (no DTD, no entities, no network);
 2. the certificate chain in the signature's KeyInfo (leaf first) verifies to the pinned NVIDIA RIM
    root at `now` (hand-coded path validation: NVIDIA's RIM CA encodes a pre-2050 date as
    GeneralizedTime, which `cryptography.x509.verification` refuses; every issuer must be a CA);
 3. the XML signature verifies with the leaf's key (signxml: canonicalization, the digest of the
    referenced content after its transforms, the signature over the canonical SignedInfo); only
    ECDSA/RSA with SHA-256/384/512 are accepted, exactly one reference;
 4. the golden measurements are read from what the signature covers (signxml's signed_xml), never
    from the input document: each Resource's index, active flag, alternatives (Hash0…HashN-1 in the
    SHA-384 namespace) and size; an index may not repeat.

compare (NVIDIA's local verifier rules): the active measurements of the driver RIM and the VBIOS
RIM are merged (an index active in both is an error); RIM index i is the report's measurement block
i+1; each active golden must match one of its alternatives with the stated size; index 35 is not
compared when the report's opaque data says NVDEC0 is disabled. The RIMs' versions must equal the
driver and VBIOS versions the report states.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidInput, InvalidSignature
from signxml.verifier import SignatureConfiguration, XMLVerifier

from ccgw.verify import limits
from ccgw.verify.attestation.nvidia import GpuReport
from ccgw.verify.attestation.x509chain import load_der, verify_chain
from ccgw.verify.errors import ChainError, LimitError, MalformedError, SignatureError, VerifyError

SWID_NS = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
HASH_NS = "http://www.w3.org/2001/04/xmlenc#sha384"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
ALTERNATIVES_MAX = 16
RESOURCES_MAX = 256
NVDEC_INDEX = 35  # RIM index of the NVDEC0 measurement (report block 36)
NVDEC_DISABLED = 0x55
_METHODS = frozenset(
    {
        SignatureMethod.ECDSA_SHA256,
        SignatureMethod.ECDSA_SHA384,
        SignatureMethod.ECDSA_SHA512,
        SignatureMethod.RSA_SHA256,
        SignatureMethod.RSA_SHA384,
        SignatureMethod.RSA_SHA512,
    }
)
_DIGESTS = frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512})


@dataclass(frozen=True)
class Golden:
    index: int  # RIM index; the report's measurement block index is index + 1
    values: tuple[str, ...]  # lowercase hex alternatives
    size: int
    active: bool
    name: str


@dataclass(frozen=True)
class Rim:
    version: str  # colloquialVersion, lowercase: a driver ("550.90.07") or VBIOS version
    product: str
    tag_id: str
    sha256: str
    goldens: dict[int, Golden]
    not_before: datetime  # the window in which the whole signing chain is valid
    not_after: datetime
    # The verified signing path, signer first, ending with the pinned RIM root: its revocation is
    # checked with the GPU's (gpu.revocation).
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def active(self) -> dict[int, Golden]:
        return {i: g for i, g in self.goldens.items() if g.active}


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_pis=True
    )


def _keyinfo_chain(root: etree._Element) -> list[x509.Certificate]:
    sig = root.find(f"{{{DSIG_NS}}}Signature")
    if sig is None:
        raise MalformedError("RIM carries no enveloped XML signature")
    certs = sig.findall(f"{{{DSIG_NS}}}KeyInfo/{{{DSIG_NS}}}X509Data/{{{DSIG_NS}}}X509Certificate")
    if not certs:
        raise MalformedError("RIM signature names no X.509 certificate")
    if len(certs) > limits.CERTS_PER_CHAIN_MAX:
        raise LimitError("RIM certificate chain too long")
    out = []
    for i, el in enumerate(certs):
        try:
            der = base64.b64decode("".join((el.text or "").split()), validate=True)
        except ValueError as exc:
            raise MalformedError(f"RIM certificate {i} is not base64") from exc
        out.append(load_der(der, f"RIM #{i}"))
    return out


def _int(el: etree._Element, attr: str, lo: int, hi: int) -> int:
    try:
        v = int(el.get(attr, ""))
    except ValueError as exc:
        raise MalformedError(f"RIM Resource {attr} is not an integer") from exc
    if not lo <= v <= hi:
        raise MalformedError(f"RIM Resource {attr} {v} out of range")
    return v


def _goldens(signed: etree._Element) -> dict[int, Golden]:
    payload = signed.find(f"{{{SWID_NS}}}Payload")
    if payload is None:
        raise MalformedError("RIM has no Payload")
    resources = payload.findall(f"{{{SWID_NS}}}Resource")
    if not resources or len(resources) > RESOURCES_MAX:
        raise MalformedError(f"RIM Payload holds {len(resources)} resources")
    out: dict[int, Golden] = {}
    for r in resources:
        index = _int(r, "index", 0, 254)
        alternatives = _int(r, "alternatives", 1, ALTERNATIVES_MAX)
        size = _int(r, "size", 1, 64)
        values = []
        for i in range(alternatives):
            v = (r.get(f"{{{HASH_NS}}}Hash{i}") or "").lower()
            try:
                ok = len(bytes.fromhex(v)) == size
            except ValueError:
                ok = False
            if not ok:
                raise MalformedError(f"RIM measurement {index} alternative {i} is not {size} bytes")
            values.append(v)
        active = r.get("active")
        if active not in ("True", "False"):
            raise MalformedError(f"RIM measurement {index} active flag is {active!r}")
        if index in out:
            raise MalformedError(f"RIM measurement index {index} repeats")
        out[index] = Golden(index, tuple(values), size, active == "True", r.get("name", ""))
    return out


def _verify_uncached(data: bytes, root_der: bytes) -> Rim:
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise MalformedError("RIM is not well-formed XML") from exc
    if root.tag != f"{{{SWID_NS}}}SoftwareIdentity":
        raise MalformedError("RIM is not a SWID SoftwareIdentity")
    chain = _keyinfo_chain(root)
    rim_root = load_der(root_der, "NVIDIA RIM root")
    not_before = max(c.not_valid_before_utc for c in [*chain, rim_root])
    not_after = min(c.not_valid_after_utc for c in [*chain, rim_root])
    if not_before > not_after:
        raise ChainError("RIM certificates are never valid at the same time")
    verify_chain(chain, [rim_root], not_before, "RIM signing")
    cfg = SignatureConfiguration(
        signature_methods=_METHODS,
        digest_algorithms=_DIGESTS,
        expect_references=1,
        verification_time=not_before,
    )
    try:
        result = XMLVerifier().verify(data, x509_cert=chain[0], expect_config=cfg, parser=_parser())
    except (InvalidSignature, InvalidInput) as exc:
        raise SignatureError(
            f"RIM XML signature does not verify ({exc.__class__.__name__})"
        ) from exc
    signed = result.signed_xml  # type: ignore[union-attr]
    if signed is None or signed.tag != f"{{{SWID_NS}}}SoftwareIdentity":
        raise SignatureError("RIM signature does not cover the SoftwareIdentity")
    meta = signed.find(f"{{{SWID_NS}}}Meta")
    version = (meta.get("colloquialVersion") if meta is not None else None) or ""
    if not version:
        raise MalformedError("RIM Meta has no colloquialVersion")
    return Rim(
        version=version.lower(),
        product=(meta.get("product") if meta is not None else None) or "",
        tag_id=signed.get("tagId") or "",
        sha256=hashlib.sha256(data).hexdigest(),
        goldens=_goldens(signed),
        not_before=not_before,
        not_after=not_after,
        chain=tuple(chain) if chain[-1] == rim_root else (*chain, rim_root),
    )


@functools.lru_cache(maxsize=64)
def _verify_cached(data: bytes, root_der: bytes) -> Rim | VerifyError:
    try:
        return _verify_uncached(data, root_der)
    except VerifyError as exc:
        return exc


def verify_rim(data: bytes, rim_root: x509.Certificate, now: datetime) -> Rim:
    """Verify one RIM (see the module doc); the signature work is cached per document, the
    validity of the chain is checked at `now` every time."""
    if len(data) > limits.COLLATERAL_ITEM_BYTES_MAX:
        raise LimitError(f"RIM exceeds {limits.COLLATERAL_ITEM_BYTES_MAX} bytes")
    from cryptography.hazmat.primitives.serialization import Encoding

    got = _verify_cached(bytes(data), rim_root.public_bytes(Encoding.DER))
    if isinstance(got, VerifyError):
        raise got
    if not got.not_before <= now <= got.not_after:
        raise ChainError(
            f"RIM {got.version} signing chain is not valid at {now.isoformat()} "
            f"(valid {got.not_before.date()} – {got.not_after.date()})"
        )
    return got


def select(rims: Sequence[Rim], version: str | None) -> Rim | None:
    want = (version or "").lower()
    return next((r for r in rims if r.version == want), None) if want else None


def compare(report: GpuReport, driver: Rim, vbios: Rim) -> list[str]:
    """Problems (empty: the report's measurements are as in the RIMs)."""
    problems: list[str] = []
    if (report.driver_version or "").lower() != driver.version:
        problems.append(f"driver RIM is for {driver.version}, the GPU runs {report.driver_version}")
    if (report.vbios_version or "").lower() != vbios.version:
        problems.append(f"VBIOS RIM is for {vbios.version}, the GPU has {report.vbios_version}")
    goldens = dict(driver.active)
    for i, g in vbios.active.items():
        if i in goldens:
            problems.append(f"driver and VBIOS RIMs both have an active measurement {i}")
        goldens[i] = g
    nvdec = report.opaque_field(11)
    nvdec_off = nvdec is not None and len(nvdec) >= 1 and nvdec[0] == NVDEC_DISABLED
    have = {m.index: m.value for m in report.measurements}
    for i, g in sorted(goldens.items()):
        if i == NVDEC_INDEX and nvdec_off:
            continue
        value = have.get(i + 1)
        if value is None:
            problems.append(f"measurement {i} is not in the report")
        elif len(value) != g.size or value.hex() not in g.values:
            problems.append(f"measurement {i} ({g.name}) differs from the RIM's")
    return problems
