"""`ccgw verify-evidence` on the real vectors and on hostile files: authentic vendor evidence is
reported as such with every check named (binding a skip, never a pass), a failed policy check exits
1, a tampered report is not authentic, unusable input is one line with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_main
from tests.vectors._paths import vectors_dir

D = vectors_dir()
TDX = ["--tdx-quote", str(D / "tdx" / "tdx_prod_quote_SPR_E4.dat"), "--at", "2023-07-01T01:00Z"]
SNP = [
    "--snp-report",
    str(D / "sev-snp" / "attestation.bin"),
    "--snp-cert",
    str(D / "sev-snp" / "vcek.testcer"),
]
GPU = [
    "--gpu-report",
    str(D / "nvidia-gpu" / "hopperAttestationReport.txt"),
    "--gpu-certs",
    str(D / "nvidia-gpu" / "hopperCertChain.txt"),
]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = run_main(["verify-evidence", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_real_tdx_quote_is_authentic_and_binding_is_a_skip(capsys) -> None:  # type: ignore[no-untyped-def]
    rc, out, _ = run([*TDX, "--json"], capsys)
    doc = json.loads(out)
    status = {c["id"]: c["status"] for c in doc["checks"]}
    assert rc == 0 and doc["authentic"] and doc["failed"] == []
    assert status["cpu.signature"] == "pass" and status["cpu.paravisor"] == "pass"
    assert status["binding.keys"] == "skip" and status["evidence.freshness"] == "skip"


def test_real_snp_and_h100_are_authentic_but_the_debug_guest_fails_the_policy(capsys) -> None:  # type: ignore[no-untyped-def]
    rc, out, _ = run([*SNP, *GPU, "--at", "2024-06-01T00:00:00Z"], capsys)
    assert rc == 1
    head = out.splitlines()[0]
    assert "AUTHENTIC" in head and "NOT AUTHENTIC" not in head and "cpu.debug" in head
    assert "PASS  gpu.signature" in out and "skip  gpu.nonce" in out  # its own nonce: no pass


def test_gpu_nonce_given_is_checked(capsys) -> None:  # type: ignore[no-untyped-def]
    rc, out, _ = run([*SNP, *GPU, "--at", "2024-06-01", "--gpu-nonce", "00" * 32], capsys)
    assert rc == 1 and "NOT AUTHENTIC" not in out.splitlines()[0]
    assert "FAIL  gpu.nonce" in out


def test_a_tampered_report_is_not_authentic(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    raw = bytearray((D / "sev-snp" / "attestation.bin").read_bytes())
    raw[0x90] ^= 1  # MEASUREMENT
    bad = tmp_path / "r.bin"
    bad.write_bytes(bytes(raw))
    rc, out, _ = run(["--snp-report", str(bad), "--snp-cert", SNP[3], "--at", "2024-06-01"], capsys)
    assert rc == 1 and out.startswith(f"{bad}: NOT AUTHENTIC")
    assert "FAIL  cpu.signature" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--snp-report", SNP[1]], "needs its VCEK"),
        (["--tdx-quote", TDX[1], "--snp-cert", SNP[3]], "does not apply"),
        ([*TDX, "--gpu-report", GPU[1]], "one --gpu-certs per --gpu-report"),
        (["--tdx-quote", TDX[1], "--at", "yesterday"], "not an ISO 8601 time"),
        (["--bundle", str(D / "tdx" / "pckcrl")], "not an evidence bundle"),
        (["--tdx-quote", "/nonexistent/q.dat"], "does not exist"),
    ],
)
def test_unusable_input_is_one_line_exit_2(args: list[str], message: str, capsys) -> None:  # type: ignore[no-untyped-def]
    rc, _, err = run(args, capsys)
    assert rc == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_saved_bundle_gets_the_full_verification(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run_main(["sim-root", str(tmp_path / "sim")]) == 0
    bundle = tmp_path / "b.pb"
    args = ["evidence", "--local", "--simulated-tee", str(tmp_path / "sim"), "-o", str(bundle)]
    assert run_main([*args, "--device", "cpu"]) == 0
    capsys.readouterr()
    # Offline there is no release log: unpinned software is refused unless accepted loudly.
    rc, _, err = run(["--bundle", str(bundle)], capsys)
    assert rc == 2 and "pins launch measurements" in err and "--accept-unreleased" in err
    loud = ["--bundle", str(bundle), "--accept-unreleased-software"]
    rc, out, err = run(loud, capsys)
    assert rc == 1 and "REFUSED" in out.splitlines()[0]  # the simulated root is not accepted
    assert "accept-unreleased-software" in err  # warned
    root = str(tmp_path / "sim" / "root.pem")
    rc, out, _ = run([*loud, "--allow-simulated-tee", root], capsys)
    assert rc == 0 and "TRUSTED" in out.splitlines()[0]
    assert "PASS  binding.keys" in out and "skip  release.inclusion" in out
    # A policy pinning the worker's measurement (derived from the same bundle) needs no flag.
    policy = tmp_path / "policy.toml"
    derive = ["derive-policy", str(bundle), "--allow-simulated-tee", root, "-o", str(policy)]
    assert run_main(derive) == 0
    capsys.readouterr()
    pinned = ["--bundle", str(bundle), "--policy", str(policy), "--allow-simulated-tee", root]
    rc, out, _ = run(pinned, capsys)
    assert rc == 0 and "PASS  cpu.measurement" in out
