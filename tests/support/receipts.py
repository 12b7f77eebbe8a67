"""A minimal receipt for tests of the receipt format (every required claim set, overridable)."""

from __future__ import annotations

from ccgw.verify.receipts import RECEIPT_VERSION, Receipt


def make_receipt(**kw: object) -> Receipt:
    base: dict[str, object] = dict(
        v=RECEIPT_VERSION,
        job_id="00",
        worker_id="w",
        key_id="k",
        account="a",
        provider="p",
        model="m",
        model_digest="00",
        request_sha256="00",
        answer_sha256="00",
        answer_chunks=1,
        input_tokens=1,
        output_tokens=1,
        started_at_ms=1,
        finished_at_ms=2,
        evidence_sha256="00",
        finish_reason="stop",
    )
    base.update(kw)
    return Receipt(**base)  # type: ignore[arg-type]
