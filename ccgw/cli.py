"""The `ccgw` command.

ccgw demo                      gateway + worker (simulated TEE) + client, one real request
ccgw gateway ...               run a gateway
ccgw worker ...                run a worker (real TEE, or --simulated-tee VENDOR_DIR)
ccgw ask ...                   send a prompt, print the answer and the receipt's verdict
ccgw keygen PREFIX             an operator Ed25519 key pair (token signing)
ccgw token ...                 issue a client/provider/admin token
ccgw sim-root DIR              create a simulated TEE vendor (development only)
ccgw tiny-model DIR            write a tiny random-weight Llama-family model (HF layout)
ccgw deposit ...               credit an account in a gateway's SQLite ledger (admin)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from ccgw import logs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ccgw", description="confidential-compute inference gateway")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default per command)")
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("demo", help="run a gateway, a worker and one real request on loopback")
    d.add_argument("--prompt", default="Confidential inference on attested hardware")
    d.add_argument("--max-new-tokens", type=int, default=24)
    d.add_argument("--post-quantum", action="store_true", help="seal with ML-KEM-768+X25519")
    d.add_argument("--data-dir", type=Path, default=None)

    g = sub.add_parser("gateway", help="run a gateway")
    g.add_argument("--listen", default="127.0.0.1:7443")
    g.add_argument(
        "--db", default="ccgw-gateway.sqlite3", help="SQLite file, or postgresql://... for replicas"
    )
    g.add_argument(
        "--db-schema", default="ccgw", help="PostgreSQL schema (with --db postgresql://)"
    )
    g.add_argument("--auth-pubkey", type=Path, action="append", required=True)
    g.add_argument(
        "--allow-simulated-tee",
        type=Path,
        metavar="ROOT_PEM",
        default=None,
        help="ALSO admit workers on the simulated TEE whose root is ROOT_PEM (dev only)",
    )
    g.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate chain")
    g.add_argument("--tls-key", type=Path, default=None, help="PEM private key")
    g.add_argument(
        "--log-key", type=Path, required=True, help="Ed25519 key (ccgw keygen) signing checkpoints"
    )
    g.add_argument("--log-origin", default="ccgw.local/log")
    g.add_argument("--policy", type=Path, default=None, help="attestation policy file (TOML/JSON)")

    w = sub.add_parser("worker", help="run a worker")
    w.add_argument("--gateway", required=True)
    w.add_argument("--token-file", type=Path, required=True)
    w.add_argument("--model", action="append", required=True, metavar="NAME=DIR[@SHA256]")
    w.add_argument("--device", default="cpu")
    w.add_argument("--region", default="")
    w.add_argument("--tls-ca", type=Path, default=None, help="CA certificate of the gateway's TLS")
    w.add_argument(
        "--simulated-tee",
        type=Path,
        metavar="VENDOR_DIR",
        default=None,
        help="run on the SIMULATED TEE from `ccgw sim-root` (no hardware protection)",
    )

    a = sub.add_parser("ask", help="send one prompt through a gateway")
    a.add_argument("--gateway", required=True)
    a.add_argument("--token-file", type=Path, required=True)
    a.add_argument("--model", required=True)
    a.add_argument("--prompt", required=True)
    a.add_argument("--max-new-tokens", type=int, default=64)
    a.add_argument("--post-quantum", action="store_true")
    a.add_argument("--allow-simulated-tee", type=Path, metavar="ROOT_PEM", default=None)
    a.add_argument("--tls-ca", type=Path, default=None, help="CA certificate of the gateway's TLS")
    a.add_argument("--policy", type=Path, default=None, help="attestation policy file")

    k = sub.add_parser("keygen", help="write PREFIX.key (0600) and PREFIX.pub")
    k.add_argument("prefix", type=Path)

    t = sub.add_parser("token", help="issue a token")
    t.add_argument("--key", type=Path, required=True)
    t.add_argument("--sub", required=True)
    t.add_argument("--role", required=True, choices=["client", "provider", "admin"])
    t.add_argument("--ttl-s", type=int, default=86_400)

    s = sub.add_parser("sim-root", help="create a simulated TEE vendor in DIR (development only)")
    s.add_argument("dir", type=Path)

    m = sub.add_parser("tiny-model", help="write a tiny random-weight model")
    m.add_argument("dir", type=Path)

    dep = sub.add_parser("deposit", help="credit an account (admin, on the gateway's database)")
    dep.add_argument("--db", type=Path, required=True)
    dep.add_argument("--account", required=True)
    dep.add_argument("--amount-micro", type=int, required=True)
    dep.add_argument("--transfer-id", required=True)
    wd = sub.add_parser("withdraw", help="debit an account (admin, on the gateway's database)")
    wd.add_argument("--db", type=Path, required=True)
    wd.add_argument("--account", required=True)
    wd.add_argument("--amount-micro", type=int, required=True)
    wd.add_argument("--transfer-id", required=True)

    au = sub.add_parser(
        "audit", help="verify a gateway's log, receipts and ledger from public data"
    )
    au.add_argument("--gateway", required=True)
    au.add_argument("--log-pubkey", type=Path, required=True, help="the gateway's log key (PEM)")
    au.add_argument("--log-name", default="ccgw-log")
    au.add_argument("--log-origin", default="ccgw.local/log")
    au.add_argument("--state", type=Path, default=Path("ccgw-audit-state.json"))
    au.add_argument("--policy", type=Path, default=None)
    au.add_argument("--allow-simulated-tee", type=Path, metavar="ROOT_PEM", default=None)
    au.add_argument("--price-in-per-1k-micro", type=int, default=1_000)
    au.add_argument("--price-out-per-1k-micro", type=int, default=2_000)
    au.add_argument("--fee-bps", type=int, default=500)
    au.add_argument("--tls-ca", type=Path, default=None)

    se = sub.add_parser("settlement", help="export a signed per-provider settlement for an epoch")
    se.add_argument("--db", type=Path, required=True)
    se.add_argument("--log-key", type=Path, required=True)
    se.add_argument("--from-size", type=int, required=True)
    se.add_argument("--to-size", type=int, required=True)
    se.add_argument("--log-origin", default="ccgw.local/log")

    pol = sub.add_parser(
        "derive-policy",
        help="write a policy that pins a known-good evidence bundle (see `derive-policy -h`)",
        add_help=False,
    )
    pol.add_argument("args", nargs=argparse.REMAINDER)

    return p


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    if raw[:1] == ["derive-policy"]:  # its own parser (verify.attestation.derive), -h included
        return _derive_policy(argparse.Namespace(args=raw[1:]))
    args = _parser().parse_args(argv)
    default_level = "WARNING" if args.cmd in ("demo", "ask") else "INFO"
    logs.configure(args.log_level or default_level)
    handler = _COMMANDS[args.cmd]
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


def _demo(args: argparse.Namespace) -> int:
    from ccgw.demo import run_demo

    return asyncio.run(run_demo(args.prompt, args.max_new_tokens, args.post_quantum, args.data_dir))


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _gateway(args: argparse.Namespace) -> int:
    from gateway.config import GatewayConfig
    from gateway.server import start_gateway

    config = GatewayConfig(
        listen=args.listen,
        db_path=Path(args.db),
        db_dsn=args.db if args.db.startswith(("postgresql://", "postgres://")) else None,
        db_schema=args.db_schema,
        auth_public_keys_pem=tuple(p.read_bytes() for p in args.auth_pubkey),
        allow_simulated_tee=args.allow_simulated_tee is not None,
        simulated_root_pem=args.allow_simulated_tee.read_bytes()
        if args.allow_simulated_tee
        else None,
        tls_cert_pem=args.tls_cert.read_bytes() if args.tls_cert else None,
        tls_key_pem=args.tls_key.read_bytes() if args.tls_key else None,
        log_key_pem=args.log_key.read_bytes(),
        log_origin=args.log_origin,
        policy_path=args.policy,
    )

    async def run() -> None:
        gw = await start_gateway(config)
        print(f"gateway listening on port {gw.port}", flush=True)
        await _until_signal()
        await gw.stop(config.limits.shutdown_grace_s)

    asyncio.run(run())
    return 0


def _worker(args: argparse.Namespace) -> int:
    from enclave.agent import WorkerAgent
    from enclave.config import WorkerConfig
    from enclave.engine import load_engine

    engines = {}
    for spec in args.model:
        name, _, rest = spec.partition("=")
        path, _, sha = rest.partition("@")
        engines[name] = load_engine(
            Path(path),
            name,
            expected_sha256=bytes.fromhex(sha) if sha else None,
            device=args.device,
        )
    from enclave.tee import CpuTee, GpuAttester

    cpu: CpuTee
    gpu: GpuAttester | None
    if args.simulated_tee is not None:
        from simtee import SimulatedSnpTee, SimulatedVendor

        print("WARNING: running on the SIMULATED TEE: no hardware protection", file=sys.stderr)
        cpu = SimulatedSnpTee(SimulatedVendor.load(args.simulated_tee))
        gpu = None
    else:
        from enclave.errors import EvidenceError
        from enclave.evidence import detect_real_tee

        try:
            cpu, gpu = detect_real_tee(require_gpu=args.device != "cpu")
        except EvidenceError as exc:
            print(f"ccgw worker: {exc}", file=sys.stderr)
            return 2
    config = WorkerConfig(
        gateway=args.gateway,
        provider_token=args.token_file.read_text().strip(),
        models=(),
        region=args.region,
        device=args.device,
        tls_ca_pem=args.tls_ca.read_bytes() if args.tls_ca else None,
    )
    asyncio.run(WorkerAgent(config, engines, cpu, gpu).run())
    return 0


def _ask(args: argparse.Namespace) -> int:
    from client.sdk import Client
    from protos.ccgw.v1 import common_pb2 as cpb

    policy, roots = _policy_and_roots(args.policy, args.allow_simulated_tee)

    async def run() -> int:
        client = Client.connect(
            args.gateway,
            args.token_file.read_text().strip(),
            policy,
            roots,
            tls_ca_pem=args.tls_ca.read_bytes() if args.tls_ca else None,
        )
        suite = (
            cpb.MLKEM768X25519_SHA256_CHACHA20POLY1305
            if args.post_quantum
            else cpb.X25519_SHA256_CHACHA20POLY1305
        )
        answer = await client.complete(
            args.model, prompt=args.prompt, max_new_tokens=args.max_new_tokens, suite=suite
        )
        print(answer.text)
        r = answer.receipt
        assert r is not None
        print(
            f"receipt: VERIFIED (worker {r.worker_id}, {r.input_tokens}+{r.output_tokens} tokens, "
            f"log index {answer.log_index})"
        )
        return 0

    return asyncio.run(run())


def _keygen(args: argparse.Namespace) -> int:
    from ccgw.keys import write_keypair

    priv, pub = write_keypair(args.prefix)
    print(f"wrote {priv} (keep secret) and {pub}")
    return 0


def _token(args: argparse.Namespace) -> int:
    from ccgw.keys import load_private
    from gateway.auth import issue_token

    print(issue_token(load_private(args.key), sub=args.sub, role=args.role, ttl_s=args.ttl_s))
    return 0


def _sim_root(args: argparse.Namespace) -> int:
    from simtee import SimulatedVendor

    SimulatedVendor.generate().save(args.dir)
    print(
        f"simulated vendor in {args.dir}; give verifiers {args.dir / 'root.pem'} (development only)"
    )
    return 0


def _tiny_model(args: argparse.Namespace) -> int:
    import runpy

    sys.argv = ["enclave.engine.tiny", str(args.dir)]
    runpy.run_module("enclave.engine.tiny", run_name="__main__")
    return 0


def _deposit(args: argparse.Namespace) -> int:
    from gateway.store.sqlite import SqliteStore

    async def run() -> None:
        store = SqliteStore(args.db)
        await store.deposit(args.account, args.amount_micro, args.transfer_id)
        print(f"{args.account}: {await store.balance(args.account)}")
        await store.close()

    asyncio.run(run())
    return 0


def _derive_policy(args: argparse.Namespace) -> int:
    from verify.attestation.derive import cli_derive_policy

    return cli_derive_policy(args.args)


def _withdraw(args: argparse.Namespace) -> int:
    from gateway.store.sqlite import SqliteStore

    async def run() -> None:
        store = SqliteStore(args.db)
        await store.withdraw(args.account, args.amount_micro, args.transfer_id)
        print(f"{args.account}: {await store.balance(args.account)}")
        await store.close()

    asyncio.run(run())
    return 0


def _policy_and_roots(policy_file: Path | None, sim_root: Path | None) -> tuple[Any, Any]:
    from verify.attestation.policy import Policy, load_policy_file
    from verify.attestation.roots import RootStore

    policy = load_policy_file(policy_file) if policy_file else Policy()
    roots = RootStore.default()
    if sim_root is not None:
        print("WARNING: accepting the SIMULATED TEE root", file=sys.stderr)
        policy, roots = policy.allowing_simulated(), roots.with_simulated(sim_root.read_bytes())
    return policy, roots


def _audit(args: argparse.Namespace) -> int:
    import grpc
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from client.audit import Auditor, LogIdentity, Pricing, format_report

    pub = load_pem_public_key(args.log_pubkey.read_bytes())
    if not isinstance(pub, Ed25519PublicKey):
        print("the log key must be Ed25519", file=sys.stderr)
        return 2
    policy, roots = _policy_and_roots(args.policy, args.allow_simulated_tee)

    async def run() -> int:
        if args.tls_ca:
            creds = grpc.ssl_channel_credentials(root_certificates=args.tls_ca.read_bytes())
            channel = grpc.aio.secure_channel(args.gateway, creds)
        else:
            channel = grpc.aio.insecure_channel(args.gateway)
        async with channel:
            auditor = Auditor(
                channel,
                LogIdentity(args.log_name, pub.public_bytes_raw(), args.log_origin),
                policy,
                roots,
                Pricing(args.price_in_per_1k_micro, args.price_out_per_1k_micro, args.fee_bps),
                state_path=args.state,
            )
            rep = await auditor.run()
        print(format_report(rep))
        return 0 if rep.ok else 1

    return asyncio.run(run())


def _settlement(args: argparse.Namespace) -> int:
    from ccgw.keys import load_private
    from gateway.config import GatewayConfig
    from gateway.settlement import export
    from gateway.store.sqlite import SqliteStore

    async def run() -> None:
        store = SqliteStore(args.db)
        try:
            print(
                await export(
                    store,
                    GatewayConfig(log_origin=args.log_origin),
                    load_private(args.log_key),
                    args.from_size,
                    args.to_size,
                )
            )
        finally:
            await store.close()

    asyncio.run(run())
    return 0


_COMMANDS = {
    "withdraw": _withdraw,
    "audit": _audit,
    "settlement": _settlement,
    "derive-policy": _derive_policy,
    "demo": _demo,
    "gateway": _gateway,
    "worker": _worker,
    "ask": _ask,
    "keygen": _keygen,
    "token": _token,
    "sim-root": _sim_root,
    "tiny-model": _tiny_model,
    "deposit": _deposit,
}
