"""Gateway, worker and client over TLS on loopback; a client that does not trust the gateway's
certificate cannot talk to it."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ccgw.client.errors import GatewayRefused
from ccgw.client.sdk import Client
from ccgw.enclave.config import WorkerLimits
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore
from tests.support.cluster import cluster
from tests.support.fake_engine import EchoEngine


def self_signed() -> tuple[bytes, bytes]:
    """A throwaway CA and a server certificate for 127.0.0.1: (CA cert + chain PEM, server key PEM)."""
    now = dt.datetime.now(dt.UTC)

    def build(
        subject: str,
        issuer: str,
        pub: ec.EllipticCurvePublicKey,
        signer: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            b = b.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return b.sign(signer, hashes.SHA256())

    ca_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = build("ccgw-test-ca", "ccgw-test-ca", ca_key.public_key(), ca_key, True)
    leaf = build("ccgw-test-gateway", "ccgw-test-ca", leaf_key.public_key(), ca_key, False)
    pem = serialization.Encoding.PEM
    key_pem = leaf_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return leaf.public_bytes(pem) + ca.public_bytes(pem), key_pem


def ca_of(chain_pem: bytes) -> bytes:
    return chain_pem[chain_pem.index(b"-----END CERTIFICATE-----") + 26 :]


async def test_job_over_tls(tmp_path: Path) -> None:
    cert, key = self_signed()
    async with cluster(tmp_path, tls_cert_pem=cert, tls_key_pem=key) as c:
        # the cluster helper dials plaintext; point the worker at TLS explicitly
        import asyncio

        from ccgw.enclave.agent import WorkerAgent
        from ccgw.enclave.config import WorkerConfig
        from ccgw.simtee import SimulatedSnpTee

        agent = WorkerAgent(
            WorkerConfig(
                gateway=c.address,
                provider_token=c.token("provider:p1", "provider"),
                models=(),
                tls_ca_pem=ca_of(cert),
                limits=WorkerLimits(reconnect_attempts_max=1),
            ),
            {"echo": EchoEngine()},
            SimulatedSnpTee(c.vendor),
        )
        await c.publish(c.release_for({"echo": EchoEngine()}), rpc=False)
        task = asyncio.create_task(agent.run())
        c.tasks.append(task)
        await asyncio.wait_for(agent.admitted.wait(), 10)
        await c.deposit("client:alice", 1_000_000)
        roots = RootStore.default().with_simulated(c.vendor.root_pem())
        policy = Policy().allowing_simulated()
        client = Client.connect(
            c.address,
            c.token("client:alice", "client"),
            policy,
            roots,
            tls_ca_pem=ca_of(cert),
            releases=c.release_trust(),
        )
        answer = await client.complete("echo", prompt="over tls")
        assert answer.text == "tls over "
        other_cert, _ = self_signed()
        stranger = Client.connect(
            c.address,
            c.token("client:alice", "client"),
            policy,
            roots,
            tls_ca_pem=ca_of(other_cert),
            releases=c.release_trust(),
        )
        with pytest.raises(GatewayRefused) as err:
            await stranger.workers("echo")
        assert err.value.code.name == "UNAVAILABLE"
