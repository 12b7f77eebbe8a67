"""Response bodies in the OpenAI shapes, plus what ccgw verified: a `ccgw` field in every body and
`x-ccgw-*` headers. The attestation part is whatever the SDK verified, passed through as JSON
(every field of its verified-worker record, so richer reports appear without changes here)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import struct
from collections.abc import Mapping
from typing import Any

from google.protobuf.message import Message

from ccgw.client.proxy.requests import EmbeddingJob, GenerationJob
from ccgw.client.sdk import Answer, TrustedWorker

SIMULATED_WARNING = "SIMULATED TEE: no hardware protection (development only)"
# raw public keys (the key id names them); the release view (the report lists it as `releases`)
_SKIP_FIELDS = {"keys", "release_view"}
_DEPTH_MAX = 16


def jsonable(obj: Any, depth: int = 0) -> Any:
    """Plain JSON values for a verified record: dataclasses, mappings, sets, bytes (hex), enums,
    datetimes and protobuf messages (skipped: raw wire values)."""
    if depth > _DEPTH_MAX:
        return repr(obj)
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, bytes | bytearray):
        return bytes(obj).hex()
    if isinstance(obj, enum.Enum):
        return obj.name
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: jsonable(getattr(obj, f.name), depth + 1)
            for f in dataclasses.fields(obj)
            if f.name not in _SKIP_FIELDS and not isinstance(getattr(obj, f.name), Message)
        }
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, set | frozenset):
        return sorted(jsonable(v, depth + 1) for v in obj)
    if isinstance(obj, list | tuple):
        return [jsonable(v, depth + 1) for v in obj]
    if isinstance(obj, Message):
        return None
    return str(obj)


def attestation(worker: TrustedWorker | None) -> dict[str, Any]:
    if worker is None:
        return {"verified": False}
    out: dict[str, Any] = {"verified": True, "worker_id": worker.worker_id}
    out.update(jsonable(worker.verified))
    if worker.verified.simulated:
        out["warning"] = SIMULATED_WARNING
    return out


def ccgw_field(answer: Answer) -> dict[str, Any]:
    r = answer.receipt
    return {
        "verified": r is not None,
        "attestation": attestation(answer.worker),
        "receipt": None
        if r is None
        else {
            "verified": True,
            "jws": answer.receipt_jws,
            "log_index": answer.log_index,
            **jsonable(r),
        },
    }


def worker_headers(worker: TrustedWorker | None) -> dict[str, str]:
    if worker is None:
        return {}
    v = worker.verified
    h = {
        "x-ccgw-attestation": "verified",
        "x-ccgw-worker-id": worker.worker_id,
        "x-ccgw-evidence-sha256": v.evidence_sha256,
        "x-ccgw-platform": v.platform,
    }
    if v.release_digest:
        h["x-ccgw-release"] = v.release_digest
    if v.simulated:
        h["x-ccgw-warning"] = SIMULATED_WARNING
    return h


def releases(policy: Any) -> dict[str, Any]:
    """The releases a policy follows (or that it follows none, and why)."""
    view = policy.release_view
    if view is None:
        return {
            "followed": False,
            "accept_unreleased_software": bool(policy.accept_unreleased),
        }
    return {
        "followed": True,
        "checkpoint_size": view.checkpoint_size,
        "releases": [
            {
                "version": c.document.manifest.version,
                "digest": c.document.digest,
                "log_index": c.index,
                "counts": not c.excluded,
                "excluded": c.excluded,
            }
            for c in view.candidates
        ],
        "ignored": list(view.ignored),
    }


def answer_headers(answer: Answer) -> dict[str, str]:
    h = worker_headers(answer.worker)
    if answer.receipt is not None:
        h["x-ccgw-receipt-verified"] = "true"
        h["x-ccgw-receipt"] = answer.receipt_jws
        h["x-ccgw-job-id"] = answer.receipt.job_id
        h["x-ccgw-log-index"] = str(answer.log_index)
    return h


def usage(answer: Answer) -> dict[str, int]:
    i, o = answer.usage.input_tokens, answer.usage.output_tokens
    return {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o}


def completion_body(job: GenerationJob, rid: str, created: int, answer: Answer) -> dict[str, Any]:
    if job.kind == "chat":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": answer.text},
            "finish_reason": answer.finish_reason or "stop",
            "logprobs": None,
        }
        obj = "chat.completion"
    else:
        choice = {
            "index": 0,
            "text": answer.text,
            "finish_reason": answer.finish_reason or "stop",
            "logprobs": None,
        }
        obj = "text_completion"
    return {
        "id": rid,
        "object": obj,
        "created": created,
        "model": job.model,
        "choices": [choice],
        "usage": usage(answer),
        "ccgw": ccgw_field(answer),
    }


def stream_chunk(
    job: GenerationJob, rid: str, created: int, text: str | None, finish: str | None = None
) -> dict[str, Any]:
    """One SSE chunk; for chat, `text=None` is the opening role delta."""
    if job.kind == "chat":
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if text is None else {}
        if text:
            delta["content"] = text
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        obj = "text_completion"
    return {"id": rid, "object": obj, "created": created, "model": job.model, "choices": [choice]}


def embeddings_body(job: EmbeddingJob, answer: Answer) -> dict[str, Any]:
    data = []
    for i, vec in enumerate(answer.embeddings):
        value: Any = vec
        if job.base64:
            value = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")
        data.append({"object": "embedding", "index": i, "embedding": value})
    tokens = answer.usage.input_tokens
    return {
        "object": "list",
        "data": data,
        "model": job.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "ccgw": ccgw_field(answer),
    }
