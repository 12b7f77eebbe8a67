"""Intel TDX TCB status (validate layer): compare the fields of a verified quote with already
verified collateral (verify.attestation.collateral), as Intel's quote-verification library does.

 1. TCB info: FMSPC and PCE-ID equal the PCK certificate's; the TDX module's MRSIGNERSEAM and SEAM
    attributes match (under the mask); the first TCB level whose 16 SGX components and PCESVN are
    ≤ the PCK's and whose TDX components are ≤ the quote's TEE_TCB_SVN gives the platform status
    (when TEE_TCB_SVN[1] > 0, bytes 0–1 are the TDX module's version and are evaluated against
    tdxModuleIdentities instead);
 2. QE identity: MRSIGNER, ISVPRODID, MISCSELECT and ATTRIBUTES (under their masks) match the QE
    report, and the first level with ISVSVN ≤ the QE's gives the QE's status.
The result is the worse of the two statuses. Mismatches raise PolicyError, bad shapes MalformedError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ccgw.verify.attestation.collateral import SignedDoc
from ccgw.verify.attestation.tdx import VerifiedTdx
from ccgw.verify.errors import MalformedError, PolicyError

STATUS_RANK = {
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
    qe_status: str
    advisory_ids: tuple[str, ...]

    def describe(self) -> str:
        adv = f" ({', '.join(self.advisory_ids)})" if self.advisory_ids else ""
        return f"{self.status}{adv}: platform {self.platform_status}, QE {self.qe_status}"


def _svns(items: Any, what: str) -> list[int]:
    try:
        out = [int(c["svn"]) for c in items]
    except (TypeError, KeyError, ValueError) as exc:
        raise MalformedError(f"TDX TCB info {what} components malformed") from exc
    if len(out) != 16:
        raise MalformedError(f"TDX TCB info {what} has {len(out)} components, expected 16")
    return out


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


def platform_status(doc: SignedDoc, v: VerifiedTdx) -> tuple[str, tuple[str, ...]]:
    body = doc.body
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


def qe_status(doc: SignedDoc, v: VerifiedTdx) -> str:
    body, qe = doc.body, v.quote.qe_report
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


def evaluate(v: VerifiedTdx, tcb_info: SignedDoc, qe_identity: SignedDoc) -> TcbEvaluation:
    status, advisories = platform_status(tcb_info, v)
    qe = qe_status(qe_identity, v)
    worst = max((status, qe), key=lambda s: STATUS_RANK.get(s, 99))
    return TcbEvaluation(worst, status, qe, advisories)
