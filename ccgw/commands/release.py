"""`ccgw release …`: compute launch measurements, build, sign, revoke, show and verify releases.

    ccgw release keygen ops/release                         # ops/release.key (0600), .pub
    ccgw release measure --recipe deploy/image/recipe.toml --artifacts out/ --out m.json
    ccgw release build --version 1.4.0 --measurements m.json --model llama=/models/llama \\
                       --valid-days 90 --out release.unsigned.json
    ccgw release sign --key ops/release.key release.unsigned.json --out release.json
    ccgw release show release.json
    ccgw release verify release.json --pubkey ops/release.pub
    ccgw release revoke --key ops/release.key --release release.json --reason "…" --out rev.json
    ccgw release publish release.json --gateway HOST:PORT --token-file admin.jwt   # into the log
    ccgw release show --gateway HOST:PORT --log-pubkey ops/log.pub                 # what is logged

A release counts once it is in the gateway's log (ADR 10): the gateway refuses documents that do
not parse or are not signed by its --release-key; clients, the gateway and auditors follow the
logged releases by default.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ccgw.commands._common import (
    EXIT_CHECK_FAILED,
    EXIT_GATEWAY,
    CliError,
    Subparsers,
    add_tls_ca,
    channel,
    log_public_raw,
    read_bytes,
    read_token,
    release_key,
)

_FMT = argparse.RawDescriptionHelpFormatter


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "release",
        help="release manifests: measure, build, sign, show, verify",
        description=__doc__,
        formatter_class=_FMT,
    )
    rs = p.add_subparsers(dest="release_cmd", required=True, metavar="STEP")

    k = rs.add_parser("keygen", help="write a release key pair: PREFIX.key (0600), PREFIX.pub")
    k.add_argument("prefix", type=Path, help="path prefix: PREFIX.key (0600) and PREFIX.pub")
    k.set_defaults(func=_keygen)

    m = rs.add_parser("measure", help="expected launch measurements of an image, per shape")
    m.add_argument("--recipe", type=Path, help="recipe TOML (deploy/image/recipe.toml)")
    m.add_argument("--artifacts", type=Path, help="directory holding the recipe's built files")
    m.add_argument("--snp-firmware", type=Path, help="OVMF image with SEV metadata")
    m.add_argument("--tdx-firmware", type=Path, help="OVMF image with TDX (TDVF) metadata")
    m.add_argument("--kernel", type=Path, help="kernel booted directly (bzImage, EFI stub)")
    m.add_argument("--initrd", type=Path, help="initrd booted with the kernel")
    m.add_argument("--cmdline", default=None, help="kernel command line")
    m.add_argument(
        "--snp",
        action="append",
        default=[],
        metavar="VCPUS:TYPE",
        help="an SEV-SNP shape, e.g. 8:EPYC-Genoa (repeatable)",
    )
    m.add_argument(
        "--tdx",
        action="append",
        default=[],
        metavar="VCPUS:MEMORY_GIB",
        help="a TDX shape, e.g. 8:64 (repeatable)",
    )
    m.add_argument(
        "--vmm",
        default=None,
        choices=["qemu", "ec2", "gce"],
        help="the VMM that launches the CVM (its firmware/vCPU layout)",
    )
    m.add_argument(
        "--guest-features",
        type=lambda s: int(s, 0),
        default=None,
        help="SEV-SNP guest features (integer, 0x… allowed)",
    )
    m.add_argument("--out", type=Path, required=True, help="write the measurements here (JSON)")
    m.set_defaults(func=_measure)

    b = rs.add_parser("build", help="write an unsigned manifest from measurements and flags")
    b.add_argument("--version", required=True, help="release version string")
    b.add_argument(
        "--measurements",
        type=Path,
        action="append",
        default=[],
        help="output of `release measure` (repeatable)",
    )
    b.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=SHA256|DIR",
        help="a model the release may serve (repeatable)",
    )
    b.add_argument("--gpu-required", action="store_true", help="workers must attest a GPU")
    b.add_argument("--gpu-driver", action="append", default=None, help="allowed driver version")
    b.add_argument("--gpu-vbios", action="append", default=None, help="allowed VBIOS version")
    b.add_argument(
        "--gpu-measurement",
        action="append",
        default=[],
        metavar="INDEX=HEX",
        help="a golden GPU measurement value (repeatable)",
    )
    b.add_argument("--not-before", default=None, help="YYYY-MM-DDTHH:MM:SSZ (default: now)")
    b.add_argument(
        "--valid-days",
        type=int,
        default=90,
        help="how long the release is valid, in days",
    )
    b.add_argument(
        "--simulated-worker",
        action="store_true",
        help="also allow the SIMULATED TEE's fixed launch measurement (development only)",
    )
    b.add_argument("--source", default="", help="where the image was built from (free text)")
    b.add_argument("--out", type=Path, required=True, help="write the unsigned manifest here")
    b.set_defaults(func=_build)

    s = rs.add_parser("sign", help="sign an unsigned manifest with the release key")
    s.add_argument("manifest", type=Path, help="the manifest to sign")
    s.add_argument(
        "--key",
        type=Path,
        required=True,
        help="release-signing key (ccgw release keygen)",
    )
    s.add_argument("--out", type=Path, required=True, help="write the signed release here")
    s.set_defaults(func=_sign)

    r = rs.add_parser("revoke", help="write a signed revocation of a release")
    r.add_argument("--key", type=Path, required=True, help="release-signing key")
    r.add_argument("--release", type=Path, help="the signed release document")
    r.add_argument("--digest", help="or the release digest (hex)")
    r.add_argument("--reason", required=True, help="why it is revoked (published)")
    r.add_argument("--out", type=Path, required=True, help="write the signed revocation here")
    r.set_defaults(func=_revoke)

    pb = rs.add_parser("publish", help="log a signed release or revocation at a gateway (admin)")
    pb.add_argument("document", type=Path, help="a signed release or revocation document")
    pb.add_argument("--gateway", required=True, help="host:port of the gateway")
    pb.add_argument("--token-file", type=Path, required=True, help="admin token (ccgw token)")
    pb.add_argument(
        "--wait-s",
        type=float,
        default=0.0,
        help="wait up to this long for the gateway to come up",
    )
    add_tls_ca(pb)
    pb.set_defaults(func=_publish)

    sh = rs.add_parser(
        "show", help="print a manifest or revocation, or (--gateway) the releases a log holds"
    )
    sh.add_argument("document", type=Path, nargs="?", help="a release or revocation document")
    sh.add_argument("--gateway", default=None, help="list the releases in this gateway's log")
    sh.add_argument(
        "--log-pubkey",
        type=Path,
        default=None,
        help="the gateway's log key (PEM): check the checkpoint and every inclusion proof",
    )
    sh.add_argument("--log-name", default="ccgw-log", help="key name in the checkpoints")
    sh.add_argument("--log-origin", default="ccgw.local/log", help="origin line of checkpoints")
    sh.add_argument(
        "--release-key", type=Path, default=None, help="check signatures with this key (PEM)"
    )
    add_tls_ca(sh)
    sh.set_defaults(func=_show)

    v = rs.add_parser("verify", help="check a release document against a release public key")
    v.add_argument("document", type=Path, help="a release or revocation document")
    v.add_argument(
        "--pubkey",
        type=Path,
        required=True,
        help="the release-signing public key (PEM)",
    )
    v.add_argument("--now", default=None, help="judge validity at this time (default: now)")
    v.set_defaults(func=_verify)


def _keygen(args: argparse.Namespace) -> int:
    from ccgw.keys import write_keypair

    try:
        priv, pub = write_keypair(args.prefix)
    except FileExistsError:
        raise CliError(f"{args.prefix}.key exists; refusing to overwrite a release key") from None
    print(f"wrote {priv} (keep offline and secret) and {pub} (publish; clients pin it)")
    return 0


def _time(text: str, what: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise CliError(f"{what} must be YYYY-MM-DDTHH:MM:SSZ, not {text!r}") from None


# --- measure --------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    """Streamed: kernels and initrds may be large."""
    try:
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        raise CliError(f"file {path} does not exist") from None
    except OSError as exc:
        raise CliError(f"cannot read file {path}: {exc.strerror}") from None


def _recipe(args: argparse.Namespace) -> dict[str, Any]:
    """Fill unset flags from the recipe; the artifacts directory holds the files it names."""
    if args.recipe is None:
        return {}
    if args.artifacts is None:
        raise CliError("--recipe needs --artifacts DIR (where build.sh put the files)")
    try:
        recipe = tomllib.loads(read_bytes(args.recipe, "recipe").decode())
        image, snp, tdx = recipe["image"], recipe.get("sev_snp", {}), recipe.get("tdx", {})
        art = args.artifacts
        roothash = read_bytes(art / image["roothash"], "root hash file").decode().strip()
        if not roothash or any(c not in "0123456789abcdef" for c in roothash):
            raise CliError(f"root hash file holds {roothash[:20]!r}, not lowercase hex")
        args.kernel = args.kernel or art / image["kernel"]
        args.initrd = args.initrd or art / image["initrd"]
        if args.cmdline is None:
            args.cmdline = image["cmdline"].replace("{roothash}", roothash)
        if snp and args.snp_firmware is None:
            args.snp_firmware = art / snp["firmware"]
            args.snp += [f"{s['vcpus']}:{s['vcpu_type']}" for s in snp["shapes"]]
        if tdx and args.tdx_firmware is None:
            args.tdx_firmware = art / tdx["firmware"]
            args.tdx += [f"{s['vcpus']}:{s['memory_gib']}" for s in tdx["shapes"]]
        args.vmm = args.vmm or snp.get("vmm", "qemu")
        if args.guest_features is None:
            args.guest_features = int(snp.get("guest_features", 1))
        for fw, pin in (
            (args.snp_firmware, snp.get("firmware_sha256")),
            (args.tdx_firmware, tdx.get("firmware_sha256")),
        ):
            if fw is not None and pin and _sha256_file(fw) != pin:
                raise CliError(f"{fw} does not have the SHA-256 the recipe pins ({pin[:16]}…)")
        return {"tdx_order": tdx.get("page_add_order", "single-pass")}
    except (KeyError, TypeError, ValueError, tomllib.TOMLDecodeError) as exc:
        raise CliError(f"recipe {args.recipe} is malformed: {exc!r}") from None


def _shape(text: str, what: str) -> tuple[int, str]:
    count, sep, rest = text.partition(":")
    if not sep or not count.isdigit() or not rest:
        raise CliError(
            f"{what} shape {text!r} is not VCPUS:{'TYPE' if what == 'SEV-SNP' else 'GIB'}"
        )
    return int(count), rest


def _measure(args: argparse.Namespace) -> int:
    from ccgw.verify.measure import boot, firmware, snp, tdx

    extra = _recipe(args)
    if not args.snp and not args.tdx:
        raise CliError("give at least one shape (--snp VCPUS:TYPE or --tdx VCPUS:GIB) or --recipe")
    kb = None
    if args.kernel is not None:
        kb = boot.read_kernel_boot(args.kernel, args.initrd, args.cmdline or "")
    elif args.initrd is not None or args.cmdline:
        raise CliError("--initrd and --cmdline need --kernel")
    launch: list[dict[str, Any]] = []
    if args.snp:
        if args.snp_firmware is None:
            raise CliError("SEV-SNP shapes need --snp-firmware")
        fw = firmware.parse_firmware(read_bytes(args.snp_firmware, "firmware"))
        for text in args.snp:
            vcpus, vtype = _shape(text, "SEV-SNP")
            shape = snp.SnpShape(
                vcpus, vtype, args.guest_features or 1, snp.Vmm(args.vmm or "qemu")
            )
            digest = snp.launch_digest(fw, shape, kb)
            launch.append(
                {
                    "platform": "sev-snp",
                    "measurement": digest.hex(),
                    "vcpus": vcpus,
                    "vcpu_type": vtype,
                }
            )
    if args.tdx:
        if args.tdx_firmware is None:
            raise CliError("TDX shapes need --tdx-firmware")
        fw = firmware.parse_firmware(read_bytes(args.tdx_firmware, "firmware"))
        order = tdx.PageAddOrder(extra.get("tdx_order", "single-pass"))
        for text in args.tdx:
            vcpus, gib = _shape(text, "TDX")
            if not gib.isdigit() or not 1 <= int(gib) <= 1 << 14:
                raise CliError(f"TDX memory {gib!r} must be whole GiB, 1..16384")
            m = tdx.measure_td(fw, kb, int(gib) << 30, order)
            entry: dict[str, Any] = {
                "platform": "tdx",
                "measurement": m.mrtd.hex(),
                "vcpus": vcpus,
                "vcpu_type": "",
            }
            if m.rtmr1 is not None and m.rtmr2 is not None:
                entry["rtmrs"] = {"1": m.rtmr1.hex(), "2": m.rtmr2.hex()}
            launch.append(entry)
    inputs = {
        "kernel_sha256": kb.kernel_sha256.hex() if kb else "",
        "initrd_sha256": kb.initrd_sha256.hex() if kb else "",
        "cmdline": kb.cmdline if kb else "",
    }
    args.out.write_text(json.dumps({"launch": launch, "inputs": inputs}, indent=2) + "\n")
    for e in launch:
        print(
            f"{e['platform']:8} {e['vcpus']:3} vCPUs {e['vcpu_type'] or '':12} {e['measurement']}"
        )
    print(f"wrote {len(launch)} launch measurement(s) to {args.out}")
    return 0


# --- build / sign / revoke ------------------------------------------------------------------------


def _models(specs: list[str]) -> dict[str, str]:
    from ccgw.verify.digests import model_dir_sha256

    out: dict[str, str] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name:
            raise CliError(f"--model {spec!r} is not NAME=SHA256 or NAME=DIR")
        is_hex = len(value) == 64 and all(c in "0123456789abcdef" for c in value)
        out[name] = value if is_hex else model_dir_sha256(Path(value)).hex()
    return out


def _build(args: argparse.Namespace) -> int:
    from ccgw.verify.release.manifest import GpuReference, LaunchEntry, ReleaseManifest

    launch = []
    for path in args.measurements:
        try:
            data = json.loads(read_bytes(path, "measurements"))
            launch += [
                LaunchEntry.from_json(e, f"{path}: launch[{i}]")
                for i, e in enumerate(data["launch"])
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise CliError(f"{path} is not `ccgw release measure` output: {exc!r}") from None
    if args.simulated_worker:
        from ccgw.simtee import SIMULATED_MEASUREMENT

        launch.append(LaunchEntry("sev-snp", SIMULATED_MEASUREMENT.hex(), 1, "simulated"))
    if not launch:
        raise CliError(
            "give --measurements FILE (from `ccgw release measure`) or --simulated-worker"
        )
    golden: dict[int, set[str]] = {}
    for spec in args.gpu_measurement:
        idx, sep, value = spec.partition("=")
        if not sep or not idx.isdigit():
            raise CliError(f"--gpu-measurement {spec!r} is not INDEX=HEX")
        golden.setdefault(int(idx), set()).add(value)
    pinned = args.gpu_driver or args.gpu_vbios or golden
    gpu = None
    if args.gpu_required or pinned:
        gpu = GpuReference(
            required=args.gpu_required,
            driver_versions=frozenset(args.gpu_driver) if args.gpu_driver else None,
            vbios_versions=frozenset(args.gpu_vbios) if args.gpu_vbios else None,
            measurements={i: frozenset(v) for i, v in golden.items()},
        )
    start = _time(args.not_before, "--not-before") if args.not_before else datetime.now(UTC)
    start = start.replace(microsecond=0)
    if not 1 <= args.valid_days <= 3650:
        raise CliError("--valid-days must be 1..3650")
    m = ReleaseManifest(
        args.version,
        start,
        start + timedelta(days=args.valid_days),
        tuple(launch),
        _models(args.model),
        gpu,
        args.source,
    )
    # the round trip through the strict parser checks every field and bound
    from ccgw.verify.release.manifest import parse_manifest

    args.out.write_bytes(parse_manifest(m.canonical()).canonical() + b"\n")
    print(f"wrote unsigned release {m.version} ({m.digest()}) to {args.out}")
    return 0


def _private(path: Path) -> Any:
    from ccgw.keys import load_private

    try:
        return load_private(path)
    except ValueError as exc:
        raise CliError(f"release key {path}: {exc}") from None


def _sign(args: argparse.Namespace) -> int:
    from ccgw.verify.release.manifest import parse_manifest, sign_manifest

    m = parse_manifest(read_bytes(args.manifest, "manifest").strip())
    doc = sign_manifest(m, _private(args.key))
    args.out.write_bytes(doc.to_bytes() + b"\n")
    print(f"signed release {m.version} ({doc.digest}) with key {doc.signature.key_id}: {args.out}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from ccgw.verify.release.manifest import (
        Revocation,
        SignedManifest,
        parse_document,
        sign_revocation,
    )

    if (args.release is None) == (args.digest is None):
        raise CliError("give exactly one of --release FILE and --digest HEX")
    digest = args.digest
    if args.release is not None:
        doc = parse_document(read_bytes(args.release, "release").strip())
        if not isinstance(doc, SignedManifest):
            raise CliError(f"{args.release} is a revocation, not a release")
        digest = doc.digest
    rev = Revocation.from_json(Revocation(digest, args.reason, datetime.now(UTC)).to_json())
    signed = sign_revocation(rev, _private(args.key))
    args.out.write_bytes(signed.to_bytes() + b"\n")
    print(f"revoked release {digest}: {args.out}")
    return 0


# --- show / verify --------------------------------------------------------------------------------


def _load(path: Path) -> Any:
    """A signed manifest or revocation, or an unsigned manifest (no "signature" field)."""
    from ccgw.verify.release import canonical
    from ccgw.verify.release.manifest import parse_document, parse_manifest

    data = read_bytes(path, "release document").strip()
    value = canonical.load(data, "release document")
    if isinstance(value, dict) and "signature" not in value:
        return parse_manifest(data)
    return parse_document(data)


def _publish(args: argparse.Namespace) -> int:
    import asyncio
    import time

    import grpc

    from ccgw.protos.ccgw.v1 import gateway_pb2 as gpb
    from ccgw.protos.ccgw.v1 import gateway_pb2_grpc as ggrpc
    from ccgw.verify.release.manifest import parse_document

    data = read_bytes(args.document, "release document").strip()
    parse_document(data)  # a document that does not parse is not sent (the gateway refuses it too)
    token = read_token(args.token_file, "admin")

    async def run() -> gpb.PublishReleaseResponse:
        deadline = time.monotonic() + max(0.0, args.wait_s)
        async with channel(args.gateway, args.tls_ca) as ch:
            stub = ggrpc.GatewayStub(ch)
            try:
                while True:
                    try:
                        resp: gpb.PublishReleaseResponse = await stub.PublishRelease(
                            gpb.PublishReleaseRequest(document=data),
                            metadata=[("authorization", f"Bearer {token}")],
                            timeout=30,
                        )
                        break
                    except grpc.aio.AioRpcError as exc:
                        down = exc.code() == grpc.StatusCode.UNAVAILABLE
                        if not down or time.monotonic() >= deadline:
                            raise
                        await asyncio.sleep(0.5)
            except grpc.aio.AioRpcError as exc:
                code = (
                    EXIT_GATEWAY if exc.code() == grpc.StatusCode.UNAVAILABLE else EXIT_CHECK_FAILED
                )
                raise CliError(
                    f"the gateway refused the document: {exc.code().name}: {exc.details()}", code
                ) from None
            return resp

    resp = asyncio.run(run())
    again = " (already logged)" if resp.already_logged else ""
    print(f"{resp.kind} of {resp.digest} logged at index {resp.log_index}{again}")
    return 0


def _show_log(args: argparse.Namespace) -> int:
    import asyncio

    from ccgw.client.errors import ClientError
    from ccgw.client.releases import LogIdentity, proven_entries
    from ccgw.protos.ccgw.v1 import log_pb2 as lpb
    from ccgw.protos.ccgw.v1 import log_pb2_grpc as lgrpc
    from ccgw.verify import checkpoint
    from ccgw.verify import log_entries as le
    from ccgw.verify.errors import VerifyError
    from ccgw.verify.release.policy import LoggedRelease, LoggedRevocation, release_view

    async def fetch() -> list[lpb.GetReleasesResponse]:
        async with channel(args.gateway, args.tls_ca) as ch:
            stub = lgrpc.TransparencyLogStub(ch)
            pages = [await stub.GetReleases(lpb.GetReleasesRequest(), timeout=30)]
            while pages[-1].more and pages[-1].entries and len(pages) < 1024:
                nxt = pages[-1].entries[-1].entry.index + 1
                req = lpb.GetReleasesRequest(tree_size=pages[0].tree_size, start_index=nxt)
                pages.append(await stub.GetReleases(req, timeout=30))
            return pages

    try:
        pages = asyncio.run(fetch())
    except Exception as exc:  # noqa: BLE001 - grpc errors: one line
        raise CliError(f"cannot read the gateway's releases: {exc}", EXIT_GATEWAY) from None
    size = pages[0].tree_size
    status = "inclusion proofs NOT checked (give --log-pubkey)"
    if args.log_pubkey is not None:
        log = LogIdentity(args.log_name, log_public_raw(args.log_pubkey), args.log_origin)
        try:
            cp = checkpoint.verify(pages[0].checkpoint, log.name, log.public_raw, log.origin)
            proven_entries(cp, pages)
        except (VerifyError, ClientError) as exc:
            raise CliError(
                f"the gateway's release log is refused: {exc}", EXIT_CHECK_FAILED
            ) from None
        status = f"every inclusion proof verified under the signed checkpoint of size {size}"
    keys = [release_key(args.release_key)] if args.release_key is not None else []
    print(f"releases in the log of {args.gateway} (checkpoint size {size}): {status}")
    rels: list[LoggedRelease] = []
    revs: list[LoggedRevocation] = []
    for page in pages:
        for pe in page.entries:
            body = le.parse(le.Entry(pe.entry.kind, bytes(pe.entry.body)))
            if isinstance(body, le.ReleaseBody):
                rels.append(LoggedRelease(body.document, pe.entry.index))
            elif isinstance(body, le.RevocationBody):
                revs.append(LoggedRevocation(body.document, pe.entry.index))
    view = release_view(rels, revs, keys, size) if keys else None
    state = {c.index: c.excluded or "counts" for c in view.candidates} if view else {}
    for r in rels:
        m = r.document.manifest
        verdict = f"  [{state[r.index]}]" if view else ""
        print(
            f"  index {r.index:6}  release {m.version} {r.document.digest}  key "
            f"{r.document.signature.key_id}  valid {m.not_before.isoformat()} .. "
            f"{m.not_after.isoformat()}{verdict}"
        )
    for v in revs:
        print(
            f"  index {v.index:6}  revocation of {v.document.revocation.release}  key "
            f"{v.document.signature.key_id}  reason {v.document.revocation.reason!r}"
        )
    if not rels and not revs:
        print("  (none)")
    return 0


def _show(args: argparse.Namespace) -> int:
    from ccgw.verify.release.manifest import ReleaseManifest, SignedManifest

    if (args.document is None) == (args.gateway is None):
        raise CliError("give a release document, or --gateway to list the releases in its log")
    if args.gateway is not None:
        return _show_log(args)
    doc = _load(args.document)
    if isinstance(doc, ReleaseManifest | SignedManifest):
        m = doc if isinstance(doc, ReleaseManifest) else doc.manifest
        signer = doc.signature.key_id if isinstance(doc, SignedManifest) else "UNSIGNED"
        print(f"release {m.version}\n  digest      {m.digest()}\n  signed by   {signer}")
        print(f"  valid       {m.not_before.isoformat()} .. {m.not_after.isoformat()}")
        if m.source:
            print(f"  source      {m.source}")
        print("  launch measurements:")
        for e in sorted(m.launch, key=lambda e: e.key()):
            print(f"    {e.platform:8} {e.shape():24} {e.measurement}")
            for i, v in sorted(e.rtmrs.items()):
                print(f"    {'':8} {f'RTMR{i}':24} {v}")
        print("  models:" + ("" if m.models else " none"))
        for name, digest in sorted(m.models.items()):
            print(f"    {name:24} {digest}")
        g = m.gpu
        gpu = "not pinned" if g is None else ("required" if g.required else "optional")
        print(f"  GPU:        {gpu}")
        if g is not None:
            print(f"    drivers   {', '.join(sorted(g.driver_versions or ())) or 'any'}")
            print(f"    VBIOS     {', '.join(sorted(g.vbios_versions or ())) or 'any'}")
            for i, vals in sorted(g.measurements.items()):
                print(f"    golden[{i}] {', '.join(sorted(vals))}")
        return 0
    r = doc.revocation
    print(f"revocation of release {r.release}\n  signed by   {doc.signature.key_id}")
    print(f"  revoked at  {r.revoked_at.isoformat()}\n  reason      {r.reason}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ccgw.verify.errors import SignatureError
    from ccgw.verify.release.manifest import SignedManifest, SignedRevocation, load_release_key

    key = load_release_key(read_bytes(args.pubkey, "release public key"))
    doc = _load(args.document)
    if not isinstance(doc, SignedManifest | SignedRevocation):
        raise CliError(f"{args.document} is an unsigned manifest", EXIT_CHECK_FAILED)
    try:
        doc.verify([key])
    except SignatureError as exc:
        raise CliError(str(exc), EXIT_CHECK_FAILED) from None
    if isinstance(doc, SignedRevocation):
        print(f"OK: revocation of {doc.revocation.release} signed by release key {key.key_id}")
        return 0
    now = _time(args.now, "--now") if args.now else datetime.now(UTC)
    m = doc.manifest
    if not m.not_before <= now < m.not_after:
        raise CliError(
            f"release {m.version} is signed by {key.key_id} but not valid at "
            f"{now.isoformat()} (valid {m.not_before.isoformat()} .. "
            f"{m.not_after.isoformat()})",
            EXIT_CHECK_FAILED,
        )
    print(f"OK: release {m.version} ({doc.digest}) signed by release key {key.key_id}, valid now")
    return 0
