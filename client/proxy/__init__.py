"""The local attesting proxy: an OpenAI-compatible HTTP API on 127.0.0.1 in front of the SDK.

An app switches to confidential inference by pointing its OpenAI client's `base_url` at the proxy.
Every call becomes one confidential job through `ccgw.client.sdk.Client`: the worker's evidence is
verified against the local policy, the request sealed to its attested key, the answer opened and
the receipt verified — nothing is sent to a worker that did not verify, and no unverified worker is
ever a fallback. The verdict and the receipt come back in `x-ccgw-*` headers and a `ccgw` field.

    config.py     ProxyLimits / ProxyConfig (every bound, units last)
    requests.py   OpenAI request bodies -> validated jobs (BadRequest names the field)
    errors.py     SDK and gateway failures -> OpenAI error objects with HTTP status codes
    render.py     response bodies, SSE chunks, the `ccgw` field, headers, the report
    app.py        the aiohttp application and `serve`
"""

from __future__ import annotations

from ccgw.client.proxy.app import build_app, serve
from ccgw.client.proxy.config import ProxyConfig, ProxyLimits

__all__ = ["ProxyConfig", "ProxyLimits", "build_app", "serve"]
