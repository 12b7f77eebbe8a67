"""`ccgw demo`: a gateway, a worker on the simulated TEE and a client on loopback, one real request
through the whole path, with the answer, the verified receipt and the reward printed.

It runs the default, released path (ADR 10): a release key signs a release listing the simulated
worker's launch measurement (the simulated TEE's SEV-SNP-format report carries a fixed one) and
the model's digest; the gateway logs it and admits the worker under it; the client follows the
releases through a checkpoint it verifies with the log key."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.client.releases import LogIdentity, ReleaseTrust
from ccgw.client.sdk import Answer, Client
from ccgw.enclave.agent import WorkerAgent
from ccgw.enclave.config import WorkerConfig
from ccgw.enclave.engine import load_engine
from ccgw.gateway.auth import issue_token
from ccgw.gateway.config import GatewayConfig
from ccgw.gateway.server import start_gateway
from ccgw.keys import load_private, public_pem, write_keypair
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.simtee import SimulatedSnpTee, SimulatedVendor
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.digests import model_dir_sha256
from ccgw.verify.release.manifest import (
    LaunchEntry,
    ReleaseKey,
    ReleaseManifest,
    SignedManifest,
    sign_manifest,
)

MODEL = "tiny-llama"


def _say(text: str = "") -> None:
    print(text, flush=True)


def _log_key(work: Path) -> bytes:
    """The demo's log (operator) key, kept next to its database: the database belongs to it."""
    if not (work / "log.key").exists():
        write_keypair(work / "log")
    load_private(work / "log.key")
    return (work / "log.key").read_bytes()


def _release(key: Ed25519PrivateKey, measurement: bytes, model_sha256: bytes) -> SignedManifest:
    """The demo's release: the simulated worker's launch measurement and the demo model."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    manifest = ReleaseManifest(
        "demo-1",
        now - dt.timedelta(minutes=5),
        now + dt.timedelta(days=1),
        (LaunchEntry("sev-snp", measurement.hex(), 1, "simulated"),),
        {MODEL: model_sha256.hex()},
        source="ccgw demo: the simulated TEE's fixed measurement",
    )
    return sign_manifest(manifest, key)


async def run_demo(
    prompt: str, max_new_tokens: int, post_quantum: bool, data_dir: Path | None
) -> int:
    with tempfile.TemporaryDirectory(prefix="ccgw-demo-") as tmp:
        work = data_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model_dir = work / "models" / MODEL
        if not (model_dir / "config.json").exists():
            await asyncio.to_thread(
                subprocess.run,  # our own module, fixed arguments
                [sys.executable, "-m", "ccgw.enclave.engine.tiny", str(model_dir)],
                check=True,
            )
        digest = model_dir_sha256(model_dir)
        engine = load_engine(model_dir, MODEL, expected_sha256=digest)
        vendor = SimulatedVendor.generate()
        auth = Ed25519PrivateKey.generate()
        release_key = Ed25519PrivateKey.generate()
        tee = SimulatedSnpTee(vendor)
        release = _release(release_key, tee.measurement, digest)
        config = GatewayConfig(
            listen="127.0.0.1:0",
            db_path=work / "gateway.sqlite3",
            db_create=True,
            log_key_pem=_log_key(work),
            auth_public_keys_pem=(public_pem(auth),),
            allow_simulated_tee=True,
            simulated_root_pem=vendor.root_pem(),
            release_keys_pem=(public_pem(release_key),),
        )
        gw = await start_gateway(config)
        address = f"127.0.0.1:{gw.port}"
        published = await gw.publish_release(release.to_bytes())
        await gw.deposit("client:demo", 10_000_000, f"demo-deposit-{work.name}")
        agent = WorkerAgent(
            WorkerConfig(
                gateway=address,
                provider_token=issue_token(auth, sub="provider:demo", role="provider"),
                models=(),
            ),
            {MODEL: engine},
            tee,
        )
        worker_task = asyncio.create_task(agent.run())
        try:
            await asyncio.wait_for(agent.admitted.wait(), 30)
            _say(f"gateway   listening on {address} (SQLite ledger {config.db_path})")
            _say(
                f"worker    admitted as {agent.worker_id}, model {MODEL} sha256 {digest.hex()[:16]}…"
            )
            _say(
                f"release   {release.manifest.version} ({release.digest[:16]}…) signed by release "
                f"key {release.signature.key_id}, logged at index {published.result.log_index}: "
                f"sev-snp measurement {tee.measurement.hex()[:16]}…, {MODEL}"
            )
            _say("WARNING   this demo trusts a SIMULATED TEE root: no hardware protection")
            async with grpc.aio.insecure_channel(address) as channel:
                log = gw.checkpointer
                client = Client(
                    channel,
                    issue_token(auth, sub="client:demo", role="client"),
                    Policy().allowing_simulated(),
                    RootStore.default().with_simulated(vendor.root_pem()),
                    releases=ReleaseTrust(
                        (ReleaseKey(release_key.public_key()),),
                        LogIdentity(config.log_key_name, log.public_raw, config.log_origin),
                    ),
                )
                workers = await client.workers(MODEL)
                w = workers[0]
                fresh = await client.challenge(w.worker_id)
                cp = client.release_checkpoint
                _say(
                    f"client    verified {w.worker_id} itself: {fresh.platform} report, root "
                    f"'{fresh.root}', key {fresh.key_id[:16]}…, fresh for the client's own nonce"
                )
                _say(
                    f"client    runs {fresh.release}, included in the log checkpoint of size "
                    f"{cp.size if cp else '?'} it verified"
                )
                suite = (
                    cpb.MLKEM768X25519_SHA256_CHACHA20POLY1305
                    if post_quantum
                    else cpb.X25519_SHA256_CHACHA20POLY1305
                )
                sealed, inner = client.seal(
                    w, MODEL, prompt=prompt, max_new_tokens=max_new_tokens, suite=suite
                )
                _say(
                    f"client    sealed {len(prompt.encode())} prompt bytes into "
                    f"{len(sealed.ciphertext)} ciphertext bytes "
                    f"({'ML-KEM-768+X25519' if post_quantum else 'X25519'} HPKE)"
                )
                print("answer    ", end="", flush=True)
                answer = Answer()
                async for ev in client.stream(w, sealed, inner, answer):
                    print(ev.text, end="", flush=True)
                _say()
                r = answer.receipt
                assert r is not None
                _say(
                    f"receipt   VERIFIED by the client: worker signature (EdDSA, kid {r.key_id[:16]}…), "
                    f"request and answer digests, {r.answer_chunks} chunks, "
                    f"{r.input_tokens} input + {r.output_tokens} output tokens, log index "
                    f"{answer.log_index}"
                )
                provider = await gw.store.balance("provider:demo")
                fee = await gw.store.balance("network:fee")
                paid = await client.balance()
                _say(
                    f"reward    provider:demo +{provider[0]} µtokens, network fee +{fee[0]}, "
                    f"client:demo balance {paid[0]} (held {paid[1]})"
                )
            return 0
        finally:
            worker_task.cancel()
            await asyncio.gather(worker_task, return_exceptions=True)
            await engine.aclose()
            await gw.stop(0)
