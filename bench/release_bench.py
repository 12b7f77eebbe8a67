"""Release machinery benchmark: offline launch measurements and the release policy.

Each row is the best of --repeat runs, and its ratio to a baseline measured in the same run:
  measurement rows  ÷ one SHA-384 pass over the firmware image (the least any digest must do);
  policy rows       ÷ one Ed25519 signature verification (what each release costs to admit);
  follower rows     the client's check of the log's releases (ADR 10 phase 2): every release
                    entry parsed and its inclusion proof verified under one checkpoint
                    (client.releases.proven_entries), ÷ the same Ed25519 verification.

    python bench/release_bench.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ccgw.client.releases import proven_entries
from ccgw.protos.ccgw.v1 import log_pb2 as lpb
from ccgw.verify import log_entries as le
from ccgw.verify import merkle
from ccgw.verify.checkpoint import Checkpoint
from ccgw.verify.measure import boot, firmware, snp, tdx
from ccgw.verify.release.manifest import SignedManifest
from ccgw.verify.release.policy import LoggedRelease, decide, release_view
from tests.unit.release.helpers import NOW, TRUSTED, manifest, signed, snp_worker


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    image = lzma.decompress((ROOT / "tests/vectors/data/ovmf/OVMF.fd.xz").read_bytes())
    fw = firmware.parse_firmware(image)
    kb = boot.kernel_boot(b"k" * (12 << 20), b"i" * (64 << 20), "console=ttyS0")
    base = best(lambda: hashlib.sha384(image).digest(), args.repeat)
    rows: list[tuple[str, float, float]] = []
    for vcpus in (1, 16, 128):
        shape = snp.SnpShape(vcpus, "EPYC-Genoa")
        t = best(lambda shape=shape: snp.launch_digest(fw, shape), args.repeat)
        rows.append((f"SEV-SNP digest, 2 MiB OVMF, {vcpus} vCPUs", t, t / base))
    t = best(lambda: tdx.mrtd(fw), args.repeat)
    rows.append(("TDX MRTD, 2 MiB OVMF", t, t / base))
    print(f"{'measurement':48} {'ms':>9} {'× sha384(image)':>16}")
    for name, t, r in rows:
        print(f"{name:48} {t * 1e3:9.2f} {r:16.1f}")
    t = best(lambda: boot.kernel_boot(kb.kernel, b"i" * (64 << 20), kb.cmdline), 1)
    print(f"{'(digesting a 12 MiB kernel + 64 MiB initrd)':48} {t * 1e3:9.2f}")

    doc = signed()
    sig = best(lambda: doc.verify([TRUSTED]), args.repeat)
    print(f"\n{'release policy':48} {'ms':>9} {'× 1 Ed25519 verify':>19}")
    for n in (1, 100, 1000):
        docs = [
            LoggedRelease(
                signed(
                    manifest(
                        version=f"1.{i}.0",
                        launch=(replace(doc.manifest.launch[0], measurement=f"{i:096x}"),),
                    )
                ),
                i,
            )
            for i in range(n)
        ]
        docs[0] = LoggedRelease(doc, 0)
        v = best(lambda docs=docs, n=n: release_view(docs, [], [TRUSTED], n), args.repeat)
        view = release_view(docs, [], [TRUSTED], n)
        d = best(lambda view=view: decide(snp_worker(), view, NOW), args.repeat)
        print(
            f"{f'release_view, {n} releases (per checkpoint)':48} {v * 1e3:9.2f} {v / sig:19.1f}"
        )
        print(f"{f'decide, {n} releases (per worker)':48} {d * 1e3:9.2f} {d / sig:19.1f}")
        page = _page([r.document for r in docs])
        cp = Checkpoint("ccgw.local/log", page.tree_size, merkle.root(_leaves(page)))
        f = best(lambda page=page, cp=cp: proven_entries(cp, [page]), args.repeat)
        print(f"{f'follower: {n} logged releases, proofs + parse':48} {f * 1e3:9.2f} {f / sig:19.1f}")


def _leaves(page: lpb.GetReleasesResponse) -> list[bytes]:
    return [le.Entry(p.entry.kind, bytes(p.entry.body)).leaf_hash() for p in page.entries]


def _page(documents: list[SignedManifest]) -> lpb.GetReleasesResponse:
    """A GetReleases page whose log holds only these releases (leaf i = release i)."""
    entries = [le.release_entry(d) for d in documents]
    leaves = [e.leaf_hash() for e in entries]
    return lpb.GetReleasesResponse(
        tree_size=len(entries),
        entries=[
            lpb.ProvenEntry(
                entry=lpb.LogEntry(index=i, kind=e.kind, body=e.body),
                hashes=merkle.inclusion_proof(i, leaves),
            )
            for i, e in enumerate(entries)
        ],
    )


if __name__ == "__main__":
    main()
