"""Logs carry sizes, counts and digests, never a prompt, an answer or key material."""

from __future__ import annotations

from pathlib import Path

import structlog

from tests.support.cluster import cluster
from tests.support.fake_engine import EchoEngine


async def test_prompt_and_answer_never_reach_the_logs(tmp_path: Path) -> None:
    marker = "zebra-7f3e9c-confidential"
    async with cluster(tmp_path) as c:
        agent = await c.add_worker({"echo": EchoEngine()})
        await c.deposit("client:alice", 1_000_000)
        with structlog.testing.capture_logs() as logs:
            answer = await c.client().complete("echo", prompt=f"{marker} tail", max_new_tokens=4)
        assert marker in answer.text  # the answer did contain it
        text = repr(logs)
        assert logs, "expected job logs"
        assert any(e.get("event") == "job_done" for e in logs)
        assert marker not in text
        assert agent.keys.public.receipt_ed25519.hex() not in text
