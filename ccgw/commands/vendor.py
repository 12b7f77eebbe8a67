"""`ccgw verify-evidence`: verify evidence offline, from files, with the rules every verifier uses.

Two inputs:
- a ccgw evidence bundle (`--bundle`, as `ccgw evidence -o` writes it): the full verification a
  client does before it trusts a worker (binding of the keys included), at `--at` or now, under a
  --policy that pins the software (offline there is no release log to follow) or, loudly,
  --accept-unreleased-software;
- vendor evidence as a machine produced it: an SEV-SNP report (raw, or inside Azure's paravisor
  envelope) with its VCEK/VLEK certificate(s), or a TDX quote, and optionally NVIDIA GPU reports
  with their certificate chains. What only a worker bundle shows (key binding, issue time, models)
  is a named skip; the output says whether the evidence is authentic (structure, chain, signature)
  and which policy checks failed.
Exit 0 when authentic (or trusted, for a bundle) and no check failed; 1 otherwise; 2 for unusable
input.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

from ccgw.commands._common import (
    EXIT_CHECK_FAILED,
    EXIT_OK,
    UNRELEASED_FLAG,
    CliError,
    Subparsers,
    add_simulated_root,
    policy_and_roots,
    read_bytes,
    warn_unreleased,
)


def register(sub: Subparsers) -> None:
    v = sub.add_parser(
        "verify-evidence",
        help="verify an evidence bundle or a machine's raw SEV-SNP / TDX / NVIDIA evidence offline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = v.add_mutually_exclusive_group(required=True)
    src.add_argument("--bundle", type=Path, help="a ccgw evidence bundle (ccgw evidence -o FILE)")
    src.add_argument(
        "--snp-report",
        type=Path,
        help="SEV-SNP attestation report (1184 bytes), or Azure's HCL envelope holding one",
    )
    src.add_argument("--tdx-quote", type=Path, help="TDX quote (v4 or v5) with its PCK chain")
    v.add_argument(
        "--snp-cert",
        type=Path,
        action="append",
        default=[],
        help="VCEK/VLEK certificate (PEM or DER), then optionally ASK/ASVK and ARK; repeatable",
    )
    v.add_argument(
        "--gpu-report",
        type=Path,
        action="append",
        default=[],
        help="NVIDIA SPDM measurement report (binary or hex text); repeatable, one per GPU",
    )
    v.add_argument(
        "--gpu-certs",
        type=Path,
        action="append",
        default=[],
        help="that GPU's certificate chain (PEM), in the order of --gpu-report",
    )
    v.add_argument("--gpu-nonce", default=None, help="hex nonce the GPU reports must answer")
    v.add_argument("--policy", type=Path, default=None, help="attestation policy file")
    v.add_argument(
        "--collateral-dir", type=Path, default=None, help="CRLs / Intel TCB info / RIMs to use"
    )
    v.add_argument(
        "--at",
        default=None,
        help="verify as of this UTC time (ISO 8601, e.g. 2024-06-01T00:00:00Z); default now",
    )
    v.add_argument("--json", action="store_true", help="machine-readable output")
    v.add_argument(
        UNRELEASED_FLAG,
        dest="accept_unreleased_software",
        action="store_true",
        help="with --bundle and no pinning --policy: accept any software the hardware attests "
        "(warned, and shown in the report)",
    )
    add_simulated_root(v)
    v.set_defaults(func=_verify_evidence, default_log_level="WARNING")


def _when(text: str | None) -> dt.datetime:
    if text is None:
        return dt.datetime.now(dt.UTC)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CliError(f"--at {text!r} is not an ISO 8601 time") from exc
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _cert_der(path: Path) -> list[bytes]:
    """DER certificates from a PEM or DER file (parsed only to split PEM; the verifier parses
    every certificate itself)."""
    import base64
    import re

    raw = read_bytes(path, "certificate")
    if b"-----BEGIN" not in raw:
        return [raw]
    blocks = re.findall(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", raw, re.S)
    try:
        return [base64.b64decode(b"".join(b.split()), validate=True) for b in blocks] or [raw]
    except ValueError as exc:
        raise CliError(f"{path}: a PEM block is not base64 ({exc})") from exc


def _gpu_report(path: Path) -> bytes:
    raw = read_bytes(path, "GPU report")
    text = raw.strip()
    try:
        return bytes.fromhex(text.decode("ascii")) if text and text.isascii() else raw
    except ValueError:
        return raw


def _verify_evidence(args: argparse.Namespace) -> int:
    from google.protobuf.message import DecodeError

    from ccgw.protos.ccgw.v1 import common_pb2 as pb
    from ccgw.verify.attestation.bundle import verify_bundle, verify_vendor_evidence
    from ccgw.verify.attestation.supplied import load_collateral_dir
    from ccgw.verify.errors import VerifyError

    policy, roots = policy_and_roots(args.policy, args.allow_simulated_tee)
    if args.collateral_dir is not None:
        extra = load_collateral_dir(args.collateral_dir)
        policy = dataclasses.replace(policy, collateral=policy.collateral.merged(extra))
    now = _when(args.at)
    if args.bundle is not None:
        if args.snp_cert or args.gpu_report or args.gpu_certs:
            raise CliError("--bundle carries its own certificates and GPU reports")
        bundle = pb.EvidenceBundle()
        try:
            bundle.ParseFromString(read_bytes(args.bundle, "evidence bundle"))
        except DecodeError as exc:
            raise CliError(f"{args.bundle}: not an evidence bundle ({type(exc).__name__})") from exc
        # Offline there is no release log to follow: the software must be pinned by the policy,
        # or accepted unpinned, loudly.
        if args.accept_unreleased_software:
            warn_unreleased()
            policy = dataclasses.replace(policy, accept_unreleased=True)
        elif args.policy is None or not policy.pins_software:
            raise CliError(
                "a bundle is trusted only under a --policy FILE that pins launch measurements "
                f"(ccgw derive-policy), or with {UNRELEASED_FLAG} (accept ANY software, loudly)"
            )
        try:
            report = verify_bundle(bundle, policy, roots, now).report
        except VerifyError as exc:
            report = exc.report  # type: ignore[assignment]
            if report is None:
                raise CliError(f"evidence refused: {exc}", EXIT_CHECK_FAILED) from exc
        assert report is not None
        return _print(args, report.to_dict(), report.render(title=str(args.bundle)), report.trusted)

    if len(args.gpu_report) != len(args.gpu_certs):
        raise CliError("give one --gpu-certs per --gpu-report, in the same order")
    gpus = [
        pb.GpuEvidence(index=i, report=_gpu_report(r), cert_chain=read_bytes(c, "GPU chain"))
        for i, (r, c) in enumerate(zip(args.gpu_report, args.gpu_certs, strict=True))
    ]
    nonce = None
    if args.gpu_nonce is not None:
        try:
            nonce = bytes.fromhex(args.gpu_nonce)
        except ValueError as exc:
            raise CliError("--gpu-nonce must be hex") from exc
    if args.snp_report is not None:
        if not args.snp_cert:
            raise CliError("an SEV-SNP report needs its VCEK or VLEK certificate: --snp-cert FILE")
        platform, report_file = pb.SEV_SNP, args.snp_report
        certs = [d for p in args.snp_cert for d in _cert_der(p)]
    else:
        if args.snp_cert:
            raise CliError("a TDX quote carries its PCK chain; --snp-cert does not apply")
        platform, report_file, certs = pb.TDX, args.tdx_quote, []
    verdict = verify_vendor_evidence(
        platform,
        read_bytes(report_file, "CPU evidence"),
        certs,
        gpus,
        policy,
        roots,
        now,
        gpu_nonce=nonce,
    )
    what = "AUTHENTIC" if verdict.authentic else "NOT AUTHENTIC"
    failed = f"; failed: {', '.join(verdict.failed)}" if verdict.failed else "; no check failed"
    line = f"{what}{failed} (vendor evidence alone, not a trusted worker)"
    out = {
        "authentic": verdict.authentic,
        "failed": list(verdict.failed),
        **verdict.report.to_dict(),
    }
    return _print(
        args, out, verdict.report.render(title=str(report_file), verdict=line), verdict.ok
    )


def _print(args: argparse.Namespace, doc: dict[str, Any], text: str, ok: bool) -> int:
    print(json.dumps(doc, indent=2) if args.json else text)
    return EXIT_OK if ok else EXIT_CHECK_FAILED
