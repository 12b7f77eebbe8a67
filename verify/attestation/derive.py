"""Derive a policy from a known-good evidence bundle ("pin this worker image").

The bundle is first verified (chain, signature, binding) at its own issue time, so only evidence
that is genuine can be pinned; the policy written pins what a fleet of identical workers shares —
the launch measurement (MRTD), TDX RTMRs and MRSEAM, the TCB as a minimum, the GPU measurements,
driver and VBIOS — and never allows debugging. Platform identities are pinned only when asked
(`pin_platform`), because they differ from machine to machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from google.protobuf.message import DecodeError

from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify.attestation.bundle import VerifiedWorker, verify_bundle
from ccgw.verify.attestation.policy import REAL_ROOTS, Policy, load_policy
from ccgw.verify.attestation.roots import SIMULATED, RootStore
from ccgw.verify.errors import MalformedError, PolicyError, VerifyError


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return (
            "{ "
            + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items())
            + " }"
        )
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _table(name: str | None, items: dict[str, object]) -> str:
    lines = [f"[{name}]"] if name else []
    lines += [f"{k} = {_toml_value(v)}" for k, v in items.items()]
    return "\n".join(lines) + "\n"


def derive_policy(
    worker: VerifiedWorker, *, max_evidence_age_s: int = 3600, pin_platform: bool = False
) -> str:
    """Policy file text (TOML) that admits workers identical to `worker`."""
    if worker.platform == "sev-snp" and not worker.tcb:
        raise MalformedError("worker has no TCB to pin")
    roots = {worker.root} | ({"nvidia-device"} if worker.gpus else set())
    top: dict[str, object] = {
        "version": 1,
        "accepted_roots": sorted(roots),
        "max_evidence_age_s": max_evidence_age_s,
        "allow_debug": False,
        "allowed_measurements": [worker.measurement],
    }
    if pin_platform and worker.platform_id and any(c != "0" for c in worker.platform_id):
        top["allowed_platform_ids"] = [worker.platform_id]
    out = [
        f"# Derived from evidence {worker.evidence_sha256} ({worker.platform}, root {worker.root}).\n"
        + ("# WARNING: the SIMULATED TEE root: development only.\n" if worker.simulated else ""),
        _table(None, top),
    ]
    if worker.platform == "sev-snp":
        snp: dict[str, object] = {
            "min_tcb": dict(worker.tcb),
            "min_guest_svn": worker.guest_svn,
            "allow_migration_agent": False,
        }
        if worker.vmpl is not None:
            snp["max_vmpl"] = worker.vmpl
        if worker.host_data.strip("0"):
            snp["allowed_host_data"] = [worker.host_data]
        out.append(_table("sev_snp", snp))
    else:
        tdx: dict[str, object] = {f"rtmr{i}": [r] for i, r in enumerate(worker.rtmrs)}
        tdx["allowed_mr_seam"] = [worker.mr_seam]
        tdx["min_tee_tcb_svn"] = worker.tee_tcb_svn
        out.append(_table("tdx", tdx))
    if worker.gpus:
        g = worker.gpus[0]
        same = all(dict(x.measurements) == dict(g.measurements) for x in worker.gpus)
        if not same:
            raise MalformedError(
                "the worker's GPUs differ in their measurements; pin them one by one"
            )
        gpu: dict[str, object] = {
            "required": True,
            "allowed_measurements": {str(i): [v] for i, v in sorted(g.measurements.items())},
        }
        if g.driver_version:
            gpu["allowed_driver_versions"] = sorted({x.driver_version or "" for x in worker.gpus})
        if g.vbios_version:
            gpu["allowed_vbios_versions"] = sorted({x.vbios_version or "" for x in worker.gpus})
        out.append(_table("gpu", gpu))
    text = "\n".join(out)
    load_policy(text)  # what we write must load
    return text


def verify_for_pinning(
    bundle: pb.EvidenceBundle, roots: RootStore, simulated: bool
) -> VerifiedWorker:
    """Verify a bundle's authenticity at its own issue time, without judging its values (they are
    what is being pinned). Debug guests are refused: their memory is open to the host."""
    at = dt.datetime.fromtimestamp(bundle.issued_at_ms / 1000, dt.UTC)
    policy = Policy(
        accepted_roots=REAL_ROOTS | ({SIMULATED} if simulated else set()),
        allow_debug=False,
        max_evidence_age_s=366 * 86400,
    )
    return verify_bundle(bundle, policy, roots, at)


def cli_derive_policy(argv: Sequence[str] | None = None) -> int:
    """`ccgw derive-policy BUNDLE [-o POLICY.toml] [--pin-platform] [--roots DIR]
    [--allow-simulated-tee ROOT_PEM] [--max-age-s N]`: BUNDLE is a serialised EvidenceBundle."""
    ap = argparse.ArgumentParser(prog="ccgw derive-policy", description=__doc__)
    ap.add_argument("bundle", type=Path, help="a known-good EvidenceBundle (binary protobuf)")
    ap.add_argument("-o", "--output", type=Path, default=None, help="write here (default stdout)")
    ap.add_argument("--pin-platform", action="store_true", help="also pin this machine's identity")
    ap.add_argument("--roots", type=Path, default=None, help="override the packaged vendor roots")
    ap.add_argument("--allow-simulated-tee", type=Path, metavar="ROOT_PEM", default=None)
    ap.add_argument("--max-age-s", type=int, default=3600)
    args = ap.parse_args(argv)
    roots = RootStore.from_dir(args.roots) if args.roots else RootStore.default()
    if args.allow_simulated_tee is not None:
        print(
            "WARNING: pinning evidence from the SIMULATED TEE (development only)", file=sys.stderr
        )
        roots = roots.with_simulated(args.allow_simulated_tee.read_bytes())
    bundle = pb.EvidenceBundle()
    try:
        bundle.ParseFromString(args.bundle.read_bytes())
        worker = verify_for_pinning(bundle, roots, args.allow_simulated_tee is not None)
        text = derive_policy(
            worker, max_evidence_age_s=args.max_age_s, pin_platform=args.pin_platform
        )
    except PolicyError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except (VerifyError, OSError, DecodeError) as exc:
        print(f"cannot derive a policy: {exc}", file=sys.stderr)
        return 2
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
