"""Intel TDX TCB status from collateral supplied as files (Intel PCS "TDX TCB info" v3 and
"TD_QE enclave identity" v2 JSON, as served), evaluated against a verified quote.

The quote alone proves which platform and TCB signed it, not whether that TCB is current; only
Intel's collateral says so. Evaluation (Intel's quote-verification rules):
 1. the collateral's signature: ECDSA P-256 over the exact bytes of its "tcbInfo" /
    "enclaveIdentity" value, by a TCB-signing certificate that chains to the pinned Intel root —
    only when that signing chain is supplied (`verified` says whether it was);
 2. it is current: issueDate ≤ now ≤ nextUpdate;
 3. TCB info: FMSPC and PCE-ID equal the PCK certificate's; the TDX module's MRSIGNERSEAM and
    SEAM attributes match; the first TCB level whose SGX components and PCESVN are ≤ the PCK's and
    whose TDX components are ≤ the quote's TEE_TCB_SVN gives the status (when TEE_TCB_SVN[1] > 0,
    bytes 0–1 are the TDX module's version and are evaluated against tdxModuleIdentities);
 4. QE identity: MRSIGNER, ISVPRODID, MISCSELECT and ATTRIBUTES (under their masks) match the QE
    report, and the first level with ISVSVN ≤ the QE's gives the QE's status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ccgw.verify.attestation.roots import Root
from ccgw.verify.attestation.tdx import VerifiedTdx
from ccgw.verify.attestation.x509chain import load_pem_chain, verify_chain
from ccgw.verify.errors import MalformedError, PolicyError, SignatureError

COLLATERAL_BYTES_MAX = 256 * 1024
_STATUS_RANK = {
    "UpToDate": 0,
    "SWHardeningNeeded": 1,
    "ConfigurationNeeded": 2,
    "ConfigurationAndSWHardeningNeeded": 3,
    "OutOfDate": 4,
    "OutOfDateConfigurationNeeded": 5,
    "Revoked": 6,
}


@dataclass(frozen=True)
class TcbEvaluation:
    status: str  # the worse of the platform's and the QE's status
    platform_status: str
    qe_status: str | None  # None when no QE identity was supplied
    verified: bool  # the collateral's signatures were checked to the pinned Intel root
    advisory_ids: tuple[str, ...]

    def describe(self) -> str:
        note = (
            ""
            if self.verified
            else " (collateral signature not verified: no signing chain supplied)"
        )
        return f"{self.status}{note}"


def _split_signed(raw: bytes, key: str) -> tuple[dict[str, Any], bytes, bytes]:
    if len(raw) > COLLATERAL_BYTES_MAX:
        raise MalformedError(f"TDX {key} collateral too large")
    text = raw.strip()
    prefix = b'{"' + key.encode() + b'":'
    cut = text.rfind(b',"signature":')
    if not text.startswith(prefix) or cut < 0:
        raise MalformedError(f"TDX {key} collateral is not in Intel PCS form")
    try:
        doc = json.loads(text)
        sig = bytes.fromhex(doc["signature"])
        body = doc[key]
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedError(f"TDX {key} collateral does not parse") from exc
    if not isinstance(body, dict) or len(sig) != 64:
        raise MalformedError(f"TDX {key} collateral is malformed")
    return body, text[len(prefix) : cut], sig


def _verify_sig(
    signed: bytes, sig: bytes, chain_pem: bytes, roots: list[Root], now: datetime, what: str
) -> None:
    chain = load_pem_chain(chain_pem, f"TDX {what} signing")
    if not chain:
        raise MalformedError(f"TDX {what} signing chain is empty")
    verify_chain(chain, [r.cert for r in roots], now, f"TDX {what} signing")
    key = chain[0].public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SignatureError(f"TDX {what} signing key is not ECDSA")
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise SignatureError(f"TDX {what} collateral signature does not verify") from exc


def _date(body: dict[str, Any], key: str, what: str) -> datetime:
    try:
        return datetime.fromisoformat(str(body[key]).replace("Z", "+00:00"))
    except (KeyError, ValueError) as exc:
        raise MalformedError(f"TDX {what} lacks a valid {key}") from exc


def _current(body: dict[str, Any], now: datetime, what: str) -> None:
    if not _date(body, "issueDate", what) <= now <= _date(body, "nextUpdate", what):
        raise PolicyError(f"TDX {what} collateral is not current at {now.isoformat()}")


def _svns(items: Any, what: str) -> list[int]:
    try:
        out = [int(c["svn"]) for c in items]
    except (TypeError, KeyError, ValueError) as exc:
        raise MalformedError(f"TDX TCB info {what} components malformed") from exc
    if len(out) != 16:
        raise MalformedError(f"TDX TCB info {what} has {len(out)} components, expected 16")
    return out


def _platform_status(body: dict[str, Any], v: VerifiedTdx) -> tuple[str, tuple[str, ...]]:
    if body.get("id") != "TDX" or body.get("version") != 3:
        raise MalformedError("TDX TCB info is not id TDX, version 3")
    if str(body.get("fmspc", "")).lower() != v.pck_info.fmspc.hex():
        raise PolicyError(
            f"TDX TCB info is for FMSPC {body.get('fmspc')}, the PCK's is {v.pck_info.fmspc.hex()}"
        )
    if str(body.get("pceId", "")).lower() != v.pck_info.pce_id.hex():
        raise PolicyError("TDX TCB info PCE-ID differs from the PCK's")
    td = v.quote.body
    module = body.get("tdxModule") or {}
    try:
        if bytes.fromhex(module["mrsigner"]) != td.mr_signer_seam:
            raise PolicyError("TDX module MRSIGNERSEAM differs from the TCB info's")
        mask = int(module["attributesMask"], 16)
        if int.from_bytes(td.seam_attributes, "big") & mask != int(module["attributes"], 16) & mask:
            raise PolicyError("TDX SEAM attributes differ from the TCB info's")
    except (KeyError, ValueError, TypeError) as exc:
        raise MalformedError("TDX TCB info tdxModule malformed") from exc
    svn = td.tee_tcb_svn
    skip = 2 if svn[1] > 0 else 0
    if skip:
        _module_identity(body, svn)
    for level in body.get("tcbLevels") or []:
        tcb = level.get("tcb", {})
        sgx = _svns(tcb.get("sgxtcbcomponents"), "SGX")
        tdxc = _svns(tcb.get("tdxtcbcomponents"), "TDX")
        if (
            all(p >= s for p, s in zip(v.pck_info.sgx_tcb_components, sgx, strict=True))
            and v.pck_info.pce_svn >= int(tcb.get("pcesvn", 1 << 16))
            and all(svn[i] >= tdxc[i] for i in range(skip, 16))
        ):
            return str(level.get("tcbStatus")), tuple(level.get("advisoryIDs") or ())
    raise PolicyError("TDX platform TCB is below every level in the TCB info (status unrecognised)")


def _module_identity(body: dict[str, Any], svn: bytes) -> None:
    want = f"TDX_{svn[1]:02d}"
    for ident in body.get("tdxModuleIdentities") or []:
        if ident.get("id") != want:
            continue
        for level in ident.get("tcbLevels") or []:
            if svn[0] >= int(level.get("tcb", {}).get("isvsvn", 1 << 16)):
                if level.get("tcbStatus") != "UpToDate":
                    raise PolicyError(f"TDX module {want} is {level.get('tcbStatus')}")
                return
        raise PolicyError(f"TDX module {want} SVN {svn[0]} is below every level")
    raise PolicyError(f"TDX TCB info has no identity for TDX module {want}")


def _qe_status(body: dict[str, Any], v: VerifiedTdx) -> str:
    qe = v.quote.qe_report
    if body.get("id") != "TD_QE":
        raise MalformedError("QE identity is not for TD_QE")
    try:
        if bytes.fromhex(body["mrsigner"]) != qe.mr_signer:
            raise PolicyError("TDX quoting enclave MRSIGNER differs from the QE identity's")
        if int(body["isvprodid"]) != qe.isv_prod_id:
            raise PolicyError("TDX quoting enclave ISVPRODID differs from the QE identity's")
        m = int(body["miscselectMask"], 16)
        if qe.misc_select & m != int(body["miscselect"], 16) & m:
            raise PolicyError("TDX quoting enclave MISCSELECT differs from the QE identity's")
        am = bytes.fromhex(body["attributesMask"])
        aw = bytes.fromhex(body["attributes"])
        if bytes(a & b for a, b in zip(qe.attributes, am, strict=True)) != bytes(
            a & b for a, b in zip(aw, am, strict=True)
        ):
            raise PolicyError("TDX quoting enclave ATTRIBUTES differ from the QE identity's")
        for level in body["tcbLevels"]:
            if qe.isv_svn >= int(level["tcb"]["isvsvn"]):
                return str(level["tcbStatus"])
    except (KeyError, ValueError, TypeError) as exc:
        raise MalformedError("TDX QE identity malformed") from exc
    raise PolicyError(f"TDX quoting enclave ISVSVN {qe.isv_svn} is below every QE identity level")


def evaluate(
    v: VerifiedTdx,
    tcb_info: bytes,
    qe_identity: bytes | None,
    signing_chain_pem: bytes | None,
    roots: list[Root],
    now: datetime,
) -> TcbEvaluation:
    body, signed, sig = _split_signed(tcb_info, "tcbInfo")
    qe_body = qe_signed = qe_sig = None
    if qe_identity is not None:
        qe_body, qe_signed, qe_sig = _split_signed(qe_identity, "enclaveIdentity")
    if signing_chain_pem is not None:  # 1
        _verify_sig(signed, sig, signing_chain_pem, roots, now, "TCB info")
        if qe_body is not None and qe_signed is not None and qe_sig is not None:
            _verify_sig(qe_signed, qe_sig, signing_chain_pem, roots, now, "QE identity")
    _current(body, now, "TCB info")  # 2
    if qe_body is not None:
        _current(qe_body, now, "QE identity")
    status, advisories = _platform_status(body, v)  # 3
    qe_status = _qe_status(qe_body, v) if qe_body is not None else None  # 4
    worst = max(
        [status] + ([qe_status] if qe_status else []), key=lambda s: _STATUS_RANK.get(s, 99)
    )
    return TcbEvaluation(worst, status, qe_status, signing_chain_pem is not None, advisories)
