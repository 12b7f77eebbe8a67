"""The worker merges a job's updates that queued up while its link was busy: fewer messages, the
same answer. Each job's messages keep their order; a start (answer salt) is never folded into an
earlier update, nothing follows a receipt into its message, and the bounds hold."""

from __future__ import annotations

import asyncio

from ccgw.enclave.agent import coalesce_updates
from ccgw.protos.ccgw.v1 import worker_pb2 as wpb

A, B = b"a" * 16, b"b" * 16
SALT = b"s" * 32


def update(job: bytes, *indexes: int, salt: bool = False, receipt: str = "") -> wpb.WorkerMessage:
    u = wpb.JobUpdate(job_id=job, receipt_jws=receipt)
    if salt:
        u.answer_salt = SALT
    for i in indexes:
        u.chunks.add(index=i, ciphertext=bytes([i]) * 100, final=bool(receipt))
    return wpb.WorkerMessage(update=u)


def failed(job: bytes) -> wpb.WorkerMessage:
    return wpb.WorkerMessage(failed=wpb.JobFailed(job_id=job, message="x"))


def queue(*msgs: wpb.WorkerMessage | None) -> asyncio.Queue[wpb.WorkerMessage | None]:
    q: asyncio.Queue[wpb.WorkerMessage | None] = asyncio.Queue()
    for m in msgs:
        q.put_nowait(m)
    return q


def shape(msgs: list[wpb.WorkerMessage]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for m in msgs:
        kind = m.WhichOneof("msg")
        if kind == "update":
            u = m.update
            out.append(
                (u.job_id[:1], bool(u.answer_salt), [c.index for c in u.chunks], u.receipt_jws)
            )
        else:
            out.append((kind, getattr(m, kind).job_id[:1] if kind == "failed" else b""))
    return out


def test_a_jobs_queued_updates_go_as_one_message_in_order() -> None:
    q = queue(
        update(B, 0, salt=True),
        update(A, 1),
        update(B, 1),
        wpb.WorkerMessage(heartbeat=wpb.Heartbeat()),
        update(A, 2),
        update(A, 3, receipt="jws-a"),
        update(A, 4),  # after A's receipt: never folded into it
    )
    out, ended = coalesce_updates(update(A, 0, salt=True), q, 16, 1 << 20)
    assert not ended and q.empty()
    assert shape(out) == [
        (b"a", True, [0, 1, 2, 3], "jws-a"),
        (b"b", True, [0, 1], ""),
        ("heartbeat", b""),
        (b"a", False, [4], ""),
    ]


def test_a_start_or_another_message_of_the_job_is_never_jumped() -> None:
    q = queue(update(A, 0, salt=True), failed(A), update(A, 1), None, update(B, 0))
    out, ended = coalesce_updates(update(A, 7), q, 16, 1 << 20)
    # The salt-bearing update stays its own message; the refusal stays between the updates.
    assert shape(out) == [
        (b"a", False, [7], ""),
        (b"a", True, [0], ""),
        ("failed", b"a"),
        (b"a", False, [1], ""),
    ]
    assert ended  # the end of the outbox is taken; what follows it is left
    assert q.qsize() == 1


def test_merged_updates_stay_within_their_bounds() -> None:
    q = queue(*(update(A, i) for i in range(1, 10)))
    out, _ = coalesce_updates(update(A, 0, salt=True), q, 4, 1 << 20)
    assert [len(m.update.chunks) for m in out] == [4, 4, 2]
    q = queue(*(update(A, i) for i in range(1, 10)))
    out, _ = coalesce_updates(update(A, 0, salt=True), q, 64, 350)
    assert all(m.ByteSize() <= 350 for m in out)
    assert [c.index for m in out for c in m.update.chunks] == list(range(10))
    assert len(out) > 1
