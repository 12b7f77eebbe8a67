"""Disputes end to end (ADR 14): a worker serving other weights under the pinned digest is caught
by one scoring pass, the dispute verifies at the gateway, reverses the reward, suspends the
worker, and the auditor recomputes all of it from the log; forged disputes are refused."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import grpc
import pytest

from ccgw.client.sdk import Answer, Client, GatewayRefused, evidence_for
from ccgw.enclave.engine import load_engine
from ccgw.enclave.engine.engine import Engine
from ccgw.enclave.engine.tiny import write_tiny_model
from ccgw.verify.consistency import INCONSISTENT, Tolerance, Verdict
from ccgw.verify.digests import model_dir_sha256
from tests.integration.test_audit import audit, kinds
from tests.support.cheats import Cheat, perturbed_model
from tests.support.cluster import Cluster, cluster

TOL = Tolerance()
PROMPTS = ("The capital of France", "Once upon a time", "def main():", "1, 2, 3,")


async def _verdict(verifier: Engine, a: Answer) -> Verdict:
    assert a.receipt is not None and a.job_input is not None
    v, _ = await verifier.score(a.job_input, a.text, a.finish_reason, a.receipt.output_tokens, TOL)
    return v


def _file(a: Answer, v: Verdict) -> bytes:
    return evidence_for(a, v, TOL, {"engine_version": "test", "dtype": "float32"}).to_json()


async def _setup(c: Cluster, worker_engine: object) -> Client:
    await c.add_worker({"tiny": worker_engine})  # type: ignore[dict-item]
    await c.deposit("client:alice", 10_000_000)
    await c.deposit("client:bob", 10_000_000)
    return c.client()


@pytest.mark.parametrize("weights", ["other", "noise", "quantised"])
async def test_other_weights_under_the_pinned_digest_are_caught_reversed_and_suspended(
    tmp_path: Path, weights: str
) -> None:
    pinned = write_tiny_model(tmp_path / "pinned", seed=0)
    if weights == "other":
        other = write_tiny_model(tmp_path / "other", seed=1)
    elif weights == "noise":  # the pinned weights, perturbed by 10 % of each tensor's std
        other = perturbed_model(pinned, tmp_path / "noise", noise=0.1)
    else:  # the pinned weights quantised to 16 levels per tensor (4 bits)
        other = perturbed_model(pinned, tmp_path / "q4", levels=16)
    digest = model_dir_sha256(pinned)
    verifier = load_engine(pinned, "tiny", expected_sha256=digest)
    cheat = load_engine(other, "tiny")
    cheat.model_sha256 = digest  # the lie: other weights under the pinned digest
    try:
        async with cluster(tmp_path, verifiers={digest.hex(): verifier}) as c:
            client = await _setup(c, cheat)
            answers = [await client.complete("tiny", prompt=p, max_new_tokens=16) for p in PROMPTS]
            verdicts = [await _verdict(verifier, a) for a in answers]
            assert all(v.status == INCONSISTENT for v in verdicts)  # every one is caught
            if weights == "other":
                assert all(v.position is not None and v.position < 4 for v in verdicts)
            a, v = answers[0], verdicts[0]
            paid, _ = await client.balance()

            # forged disputes first: each refused, nothing logged
            for forged in (
                dataclasses.replace(evidence_for(a, v, TOL, {}), answer=a.text + "!"),
                dataclasses.replace(
                    evidence_for(a, v, TOL, {}), receipt_jws=answers[1].receipt_jws
                ),
                dataclasses.replace(
                    evidence_for(a, v, TOL, {}),
                    job=dataclasses.replace(a.job_input, prompt="another prompt"),  # type: ignore[type-var]
                ),
            ):
                with pytest.raises(GatewayRefused) as err:
                    await client.dispute(forged.to_json())
                assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
            with pytest.raises(GatewayRefused) as other_acct:  # bob may not dispute alice's job
                await c.client("client:bob").dispute(_file(a, v))
            assert other_acct.value.code == grpc.StatusCode.PERMISSION_DENIED

            resp = await client.dispute(_file(a, v))
            assert resp.outcome == "reproduced" and resp.worker_id == a.worker_id
            assert resp.position == v.position
            refunded, _ = await client.balance()
            assert refunded - paid == _cost(c, a)
            again = await client.dispute(_file(a, v))  # the same dispute: logged once
            assert again.already_logged and again.log_index == resp.log_index
            assert (await client.balance())[0] == refunded
            # the worker is suspended from routing: no client is offered it any more, and a
            # restarted gateway reads the suspension back from its log's view
            assert await client.workers("tiny") == []
            assert await c.gateway.store.unique_keys("suspended_worker") == [a.worker_id]
            rep = await audit(c)
            assert rep.ok, kinds(rep)
            assert rep.balances["client:alice"] == refunded
    finally:
        await verifier.aclose()
        await cheat.aclose()


def _cost(c: Cluster, a: Answer) -> int:
    r = a.receipt
    assert r is not None
    return c.gateway.store.current_schedule().cost_micro(r.model, r.input_tokens, r.output_tokens)


@pytest.mark.parametrize("mode", ["truncate", "substitute", "replay"])
async def test_answer_cheats_are_caught_and_a_client_disputes_its_own_job(
    tmp_path: Path, mode: str
) -> None:
    pinned = write_tiny_model(tmp_path / "pinned")
    digest = model_dir_sha256(pinned)
    verifier = load_engine(pinned, "tiny", expected_sha256=digest)
    worker = load_engine(pinned, "tiny", expected_sha256=digest)
    try:
        async with cluster(tmp_path, verifiers={digest.hex(): verifier}) as c:
            client = await _setup(c, Cheat(worker, mode))
            answers = [await client.complete("tiny", prompt=p, max_new_tokens=12) for p in PROMPTS]
            verdicts = [await _verdict(verifier, a) for a in answers]
            cheated = verdicts[1:] if mode == "replay" else verdicts  # replay's first is honest
            assert all(v.status == INCONSISTENT for v in cheated), [v.reason for v in verdicts]
            if mode == "truncate":
                assert all("truncated" in v.reason for v in cheated)
            resp = await client.dispute(_file(answers[-1], verdicts[-1]))
            assert resp.outcome == "reproduced"
            rep = await audit(c)
            assert rep.ok, kinds(rep)
    finally:
        await verifier.aclose()
        await worker.aclose()


async def test_honest_answers_cannot_be_disputed_and_unverified_ones_are_only_claimed(
    tmp_path: Path,
) -> None:
    pinned = write_tiny_model(tmp_path / "pinned")
    digest = model_dir_sha256(pinned)
    verifier = load_engine(pinned, "tiny", expected_sha256=digest)
    worker = load_engine(pinned, "tiny", expected_sha256=digest, dtype="bfloat16")
    try:
        async with cluster(tmp_path, verifiers={digest.hex(): verifier}) as c:
            client = await _setup(c, worker)
            a = await client.complete("tiny", prompt="Hello", max_new_tokens=16)
            v = await _verdict(verifier, a)
            assert not v.inconsistent, v.reason  # bfloat16 worker, float32 verifier: no alarm
            lie = Verdict(INCONSISTENT, 0, "made up", v.answer_tokens, 1)
            with pytest.raises(GatewayRefused, match="not reproduced"):
                await client.dispute(_file(a, lie))
        # a gateway without a verifier for the digest records the dispute as claimed only
        async with cluster(tmp_path / "second") as c2:
            client = await _setup(c2, worker)
            a = await client.complete("tiny", prompt="Hello", max_new_tokens=16)
            before, _ = await client.balance()
            resp = await client.dispute(_file(a, Verdict(INCONSISTENT, 0, "claimed", 16, 1)))
            assert resp.outcome == "claimed"
            assert (await client.balance())[0] == before
            assert await client.workers("tiny") != []  # not suspended on a claim
            rep = await audit(c2)
            assert rep.ok, kinds(rep)
    finally:
        await verifier.aclose()
        await worker.aclose()


async def test_canary_and_dispute_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ccgw.commands._common import CliError
    from tests.integration.test_verify_command import run_cli

    pinned = write_tiny_model(tmp_path / "pinned", seed=0)
    other = write_tiny_model(tmp_path / "other", seed=1)
    digest = model_dir_sha256(pinned)
    verifier = load_engine(pinned, "tiny", expected_sha256=digest)
    honest = load_engine(pinned, "tiny", expected_sha256=digest)
    cheat = load_engine(other, "tiny")
    cheat.model_sha256 = digest
    try:
        async with cluster(tmp_path, verifiers={digest.hex(): verifier}) as c:
            await c.add_worker({"tiny": honest}, provider="provider:honest")
            await c.deposit("client:auditor", 10_000_000)
            (tmp_path / "t.jwt").write_text(c.token("client:auditor", "client"))
            (tmp_path / "root.pem").write_bytes(c.vendor.root_pem())
            common = ["--gateway", c.address, "--token-file", str(tmp_path / "t.jwt")]
            common += ["--allow-simulated-tee", str(tmp_path / "root.pem")]
            canary_trust = c.trust_args(tmp_path)
            canary = ["canary", "--model", "tiny", "--model-dir", str(pinned), "--count", "4"]
            canary += ["--rate-per-s", "1000", "--seed", "3", *common, *canary_trust]
            code, out = await run_cli([*canary, "--out", str(tmp_path / "ok")], capsys)
            assert code == 0, out
            assert "4 canaries, 0 inconsistent" in out
            await c.gateway.registry.get(c.gateway.registry.sessions()[0].worker_id).outbox.put(
                None
            )  # the honest worker leaves; the cheat takes over
            await asyncio.sleep(0.5)
            await c.add_worker({"tiny": cheat}, provider="provider:cheat")
            code, out = await run_cli([*canary, "--out", str(tmp_path / "bad")], capsys)
            assert code == 1 and "4 canaries, 4 inconsistent" in out, out
            files = sorted((tmp_path / "bad").iterdir())
            assert len(files) == 4  # the auditor keeps its own prompts, answers and receipts
            code, out = await run_cli(["dispute", str(files[0]), *common], capsys)
            assert code == 0 and "reproduced" in out and "suspended" in out, out
            tampered = tmp_path / "tampered.json"
            doc = json.loads(files[1].read_bytes())
            doc["answer"] = doc["answer"][:-1]
            tampered.write_text(json.dumps(doc))
            with pytest.raises(CliError, match="altered answer") as refused:
                await run_cli(["dispute", str(tampered), *common], capsys)
            assert refused.value.code == 1
    finally:
        for e in (verifier, honest, cheat):
            await e.aclose()
