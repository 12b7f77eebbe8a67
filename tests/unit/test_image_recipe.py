"""The worker image recipe is correct by review; these checks keep the reviewable promises true:
every base image pinned by digest, every Python requirement pinned by version and hash and
installed with --require-hashes, the command line fixed but for the verity root hash, and every
shape one that `ccgw release measure` can compute."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from ccgw.verify.measure import boot, snp

IMAGE = Path(__file__).resolve().parents[2] / "deploy" / "image"


def test_base_images_pinned_by_digest() -> None:
    for name in ("Dockerfile", "Dockerfile.ovmf"):
        froms = [
            line.split()[1]
            for line in (IMAGE / name).read_text().splitlines()
            if line.startswith("FROM ")
        ]
        assert froms, name
        for ref in froms:
            assert ref == "scratch" or re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", ref), ref
    assert (
        "EDK2_COMMIT=" + "6951dfe7d59d144a3a980bd7eda699db2d8554ac"
        in (IMAGE / "Dockerfile.ovmf").read_text()
    )


def test_python_dependencies_locked_by_hash() -> None:
    assert "pip install --require-hashes --no-deps -r" in (IMAGE / "Dockerfile").read_text()
    lock = (IMAGE / "requirements.lock").read_text()
    entries = re.split(r"\n(?=[a-z0-9])", lock.split("\n", 3)[3].strip())
    assert len(entries) > 30
    for entry in entries:
        assert re.match(r"[a-z0-9._-]+(\[[a-z,]+\])?==[\w.+]+ \\\n", entry), entry[:60]
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), entry[:60]
    names = {e.split("==")[0] for e in entries}
    wanted = re.findall(r"^([a-z0-9-]+)", (IMAGE / "requirements.in").read_text(), re.M)
    assert set(wanted) <= names


def test_recipe_is_measurable() -> None:
    recipe = tomllib.loads((IMAGE / "recipe.toml").read_text())
    cmdline = recipe["image"]["cmdline"]
    assert cmdline.count("{roothash}") == 1 and "roothash={roothash}" in cmdline
    boot.check_cmdline(cmdline.replace("{roothash}", "ab" * 32))
    for s in recipe["sev_snp"]["shapes"]:
        snp.SnpShape(
            s["vcpus"],
            s["vcpu_type"],
            recipe["sev_snp"]["guest_features"],
            snp.Vmm(recipe["sev_snp"]["vmm"]),
        )
    assert recipe["tdx"]["page_add_order"] in ("single-pass", "two-pass")
    assert all(s["vcpus"] > 0 and s["memory_gib"] > 0 for s in recipe["tdx"]["shapes"])
