"""`ccgw release`: keygen → measure (from the recipe and from flags) → build → sign → show →
verify → revoke, in-process; the documents it writes are the ones the release policy accepts, and
each failure is one line with the documented exit code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ccgw.cli import main
from ccgw.verify.measure import boot, firmware, snp
from ccgw.verify.release.manifest import SignedManifest, SignedRevocation, parse_document
from tests.unit.measure import fwgen

ROOT = Path(__file__).resolve().parents[2]
MODEL = "ab" * 32


@pytest.fixture(autouse=True)
def _keep_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() configures structlog to this test's captured stdout; later tests must not log into
    a closed capture, so the in-process runs leave logging as it was."""
    monkeypatch.setattr("ccgw.cli.logs.configure", lambda level: None)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    art = tmp_path / "art"
    art.mkdir()
    (art / "OVMF.amdsev.fd").write_bytes(fwgen.build(16))
    (art / "OVMF.inteltdx.fd").write_bytes(
        fwgen.build(16, sev=None, tdvf=[(0, 0x2000, 0xFFFF0000, 0x2000, 0, 1)])
    )
    from tests.unit.measure.test_tdx import SECS, make_pe

    (art / "vmlinuz").write_bytes(make_pe(SECS))
    (art / "initrd.img").write_bytes(b"initrd" * 1000)
    (art / "roothash").write_text("0123abcd" * 8 + "\n")
    return art


def run(*argv: str) -> int:
    return main([*argv])


def test_release_end_to_end(
    tmp_path: Path, artifacts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "recipe.toml"
    shutil.copy(ROOT / "deploy" / "image" / "recipe.toml", recipe)
    key = tmp_path / "release"
    assert run("release", "keygen", str(key)) == 0
    assert run("release", "keygen", str(key)) == 2  # never overwrites a release key
    m = tmp_path / "m.json"
    assert (
        run(
            "release",
            "measure",
            "--recipe",
            str(recipe),
            "--artifacts",
            str(artifacts),
            "--out",
            str(m),
        )
        == 0
    )
    launch = json.loads(m.read_text())["launch"]
    assert [e["platform"] for e in launch] == ["sev-snp"] * 4 + ["tdx"] * 2
    assert all("rtmrs" in e for e in launch if e["platform"] == "tdx")
    # the recipe's SEV-SNP entry is what the library computes for the same files and shape
    cmdline = json.loads(m.read_text())["inputs"]["cmdline"]
    assert "roothash=" + "0123abcd" * 8 in cmdline
    kb = boot.kernel_boot(
        (artifacts / "vmlinuz").read_bytes(), (artifacts / "initrd.img").read_bytes(), cmdline
    )
    fw = firmware.parse_firmware((artifacts / "OVMF.amdsev.fd").read_bytes())
    assert (
        launch[0]["measurement"] == snp.launch_digest(fw, snp.SnpShape(8, "EPYC-Genoa"), kb).hex()
    )

    unsigned, signed, rev = tmp_path / "r.unsigned.json", tmp_path / "r.json", tmp_path / "rev.json"
    assert (
        run(
            "release",
            "build",
            "--version",
            "1.4.0",
            "--measurements",
            str(m),
            "--model",
            f"llama={MODEL}",
            "--gpu-required",
            "--gpu-driver",
            "550.90.07",
            "--not-before",
            "2026-01-01T00:00:00Z",
            "--valid-days",
            "90",
            "--out",
            str(unsigned),
        )
        == 0
    )
    assert run("release", "sign", str(unsigned), "--key", f"{key}.key", "--out", str(signed)) == 0
    doc = parse_document(signed.read_bytes().strip())
    assert isinstance(doc, SignedManifest) and doc.manifest.models == {"llama": MODEL}
    capsys.readouterr()
    assert run("release", "show", str(signed)) == 0
    shown = capsys.readouterr().out
    assert "release 1.4.0" in shown and launch[0]["measurement"] in shown and "550.90.07" in shown
    pub = f"{key}.pub"
    assert (
        run("release", "verify", str(signed), "--pubkey", pub, "--now", "2026-02-01T00:00:00Z") == 0
    )
    assert (
        run("release", "verify", str(signed), "--pubkey", pub, "--now", "2026-06-01T00:00:00Z") == 1
    )  # expired
    assert (
        run(
            "release",
            "revoke",
            "--key",
            f"{key}.key",
            "--release",
            str(signed),
            "--reason",
            "bad build",
            "--out",
            str(rev),
        )
        == 0
    )
    r = parse_document(rev.read_bytes().strip())
    assert isinstance(r, SignedRevocation) and r.revocation.release == doc.digest
    assert run("release", "verify", str(rev), "--pubkey", pub) == 0


def test_verify_refuses_forgery_and_other_keys(
    tmp_path: Path, artifacts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b"):
        assert run("release", "keygen", str(tmp_path / name)) == 0
    m, unsigned, signed = tmp_path / "m.json", tmp_path / "u.json", tmp_path / "s.json"
    assert (
        run(
            "release",
            "measure",
            "--snp-firmware",
            str(artifacts / "OVMF.amdsev.fd"),
            "--snp",
            "2:EPYC-v4",
            "--vmm",
            "qemu",
            "--out",
            str(m),
        )
        == 0
    )
    assert (
        run("release", "build", "--version", "2", "--measurements", str(m), "--out", str(unsigned))
        == 0
    )
    assert (
        run(
            "release", "sign", str(unsigned), "--key", str(tmp_path / "a.key"), "--out", str(signed)
        )
        == 0
    )
    capsys.readouterr()
    assert run("release", "verify", str(signed), "--pubkey", str(tmp_path / "b.pub")) == 1
    assert "not trusted" in capsys.readouterr().err
    forged = json.loads(signed.read_text())
    forged["manifest"]["version"] = "3"
    signed.write_text(json.dumps(forged))
    assert run("release", "verify", str(signed), "--pubkey", str(tmp_path / "a.pub")) == 1
    err = capsys.readouterr().err
    assert "does not verify" in err and err.count("\n") == 1
    assert run("release", "verify", str(unsigned), "--pubkey", str(tmp_path / "a.pub")) == 1


@pytest.mark.parametrize(
    ("argv", "code", "match"),
    [
        (["measure", "--snp", "2:EPYC-v4", "--out", "x"], 2, "--snp-firmware"),
        (["measure", "--out", "x"], 2, "at least one shape"),
        (["measure", "--snp", "two", "--snp-firmware", "f", "--out", "x"], 2, "does not exist"),
        (
            ["build", "--version", "1", "--measurements", "nope.json", "--out", "x"],
            2,
            "does not exist",
        ),
        (["show", "missing.json"], 2, "does not exist"),
    ],
)
def test_usage_errors(
    argv: list[str],
    code: int,
    match: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run("release", *argv) == code
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_malformed_firmware_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.fd"
    bad.write_bytes(bytes(5000))
    assert (
        run(
            "release",
            "measure",
            "--snp-firmware",
            str(bad),
            "--snp",
            "1:EPYC-v4",
            "--out",
            str(tmp_path / "m.json"),
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "multiple of 4096" in err and err.count("\n") == 1
