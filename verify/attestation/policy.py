"""Attestation policy as data. Required wherever evidence is verified; there is no implicit
default that accepts everything, and the simulated root is accepted only when named.

A policy file (TOML, or JSON with the same structure) is loaded by `load_policy`; every problem in
it is listed in one PolicyFileError, never only the first. Lists that pin values (measurements,
platform ids, RTMRs, GPU measurements) may be absent (= not pinned) but never empty: an empty
allow-list is refused rather than read as "allow all" or silently as "allow nothing".

    version = 1
    accepted_roots = ["amd-milan", "amd-genoa", "amd-turin", "intel-sgx", "nvidia-device"]
    max_evidence_age_s = 3600
    clock_skew_s = 60
    allow_debug = false
    allowed_measurements = ["<hex48>"]          # SEV-SNP MEASUREMENT / TDX MRTD
    allowed_platform_ids = ["<hex>"]            # SEV-SNP chip ids / TDX PPIDs

    [sev_snp]
    min_tcb = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }   # fmc too, on Turin
    min_guest_svn = 0
    allow_smt = true
    allow_migration_agent = false
    max_vmpl = 0
    allowed_host_data = ["<hex32>"]
    allow_azure_paravisor = false               # reports Azure's paravisor (HCL) asked for

    [tdx]
    rtmr0 = ["<hex48>"]                         # rtmr0 … rtmr3
    allowed_mr_seam = ["<hex48>"]
    min_tee_tcb_svn = "<hex16>"                 # component-wise minimum
    accepted_tcb_status = ["UpToDate"]
    require_collateral = false
    tcb_info_file = "tcbinfo.json"              # relative to the policy file
    qe_identity_file = "qeidentity.json"
    collateral_signing_chain_file = "tcb-sign-chain.pem"

    [gpu]
    required = true                             # a GPU in confidential-computing mode
    allowed_measurements = { "1" = ["<hex>"], "2" = ["<hex>"] }
    allowed_driver_versions = ["550.90.07"]
    allowed_vbios_versions = ["96.00.9F.00.01"]
    rim_files = ["driver-550.90.07.swidtag", "vbios-96.00.9F.00.01.swidtag"]  # NVIDIA RIMs

    [models]                                    # model weight digests (SHA-256, hex) pinned
    llama = ["<hex32>"]

    [collateral]
    dir = "collateral"                          # CRLs, Intel TCB info / QE identity, chains

    [checks]
    enforce = ["cpu.revocation", "gpu.measurements"]   # a skip of these refuses; "*" = all

Checks (verify.attestation.report.CHECKS) are enforced — a skip refuses — when they are always
enforced (structure, chains, signatures, debug, key binding, freshness), listed in `checks.enforce`,
or implied: `gpu.required` enforces the GPU checks and the CPU↔GPU binding, `tdx.require_collateral`
enforces cpu.collateral, a policy that does not accept the simulated root enforces root.real. Every
other check may be skipped; it is reported as a skip, never as a pass.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ccgw.verify.attestation.report import ALWAYS_ENFORCED, CHECK_IDS
from ccgw.verify.attestation.roots import SIMULATED
from ccgw.verify.attestation.supplied import Collateral, load_collateral_dir
from ccgw.verify.errors import LimitError, PolicyFileError
from ccgw.verify.release.policy import ReleaseView

REAL_ROOTS = frozenset({"amd-milan", "amd-genoa", "amd-turin", "intel-sgx", "nvidia-device"})
KNOWN_ROOTS = REAL_ROOTS | {SIMULATED}
POLICY_VERSION = 1
# What `[gpu] required = true` enforces: a verified GPU in CC mode, bound to the CPU evidence.
_GPU_HARDWARE = frozenset(
    {"gpu.report", "gpu.chain", "gpu.signature", "gpu.nonce", "gpu.cc_mode", "binding.cpu_gpu"}
)
SNP_TCB_COMPONENTS = ("bootloader", "tee", "snp", "microcode", "fmc")
TDX_TCB_STATUSES = frozenset(
    {
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
        "Revoked",
    }
)


@dataclass(frozen=True)
class Policy:
    accepted_roots: frozenset[str] = REAL_ROOTS
    # Hex launch measurements (SEV-SNP MEASUREMENT / TDX MRTD) allowed; None = not pinned.
    allowed_measurements: frozenset[str] | None = None
    allow_debug: bool = False
    require_gpu: bool = False
    max_evidence_age_s: int = 3600
    clock_skew_s: int = 60
    # Hex SEV-SNP chip ids / TDX PPIDs of registered machines; None = any machine.
    allowed_platform_ids: frozenset[str] | None = None
    # SEV-SNP
    snp_min_tcb: Mapping[str, int] = field(default_factory=dict)
    snp_min_guest_svn: int = 0
    snp_allow_smt: bool = True
    snp_allow_migration_agent: bool = False
    snp_max_vmpl: int | None = None
    snp_allowed_host_data: frozenset[str] | None = None
    # Accept SEV-SNP reports that Azure's paravisor (HCL) requested for the guest: the launch
    # measurement then covers the paravisor, not the worker image (cpu.paravisor is a skip).
    snp_allow_azure_paravisor: bool = False
    # TDX
    tdx_allowed_rtmrs: Mapping[int, frozenset[str]] = field(default_factory=dict)
    tdx_allowed_mr_seam: frozenset[str] | None = None
    tdx_min_tee_tcb_svn: bytes | None = None
    tdx_accepted_tcb_status: frozenset[str] = frozenset({"UpToDate"})
    tdx_require_collateral: bool = False
    # GPU
    gpu_allowed_measurements: Mapping[int, frozenset[str]] = field(default_factory=dict)
    gpu_allowed_driver_versions: frozenset[str] | None = None
    gpu_allowed_vbios_versions: frozenset[str] | None = None
    # NVIDIA RIM files (signed SWID tags): GPU measurements must be as in the RIMs for the
    # driver and VBIOS the GPU reports.
    gpu_rims: tuple[bytes, ...] = ()
    # Model name → allowed SHA-256 digests (hex) of its weights; absent = not pinned.
    allowed_model_digests: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Collateral the policy brings (CRLs, Intel TCB info / QE identity / signing chains).
    collateral: Collateral = field(default_factory=Collateral)
    # Checks the policy enforces beyond the always-enforced ones ("*" = every check).
    enforce: frozenset[str] = frozenset()
    # Released software (ADR 10): the releases of a log checkpoint the verifier checked itself
    # (verify.release); the worker must run one of them. None = no release policy: the
    # release.inclusion check is a skip, never a pass.
    release_view: ReleaseView | None = None
    # --accept-unreleased-software: software in no release is accepted on purpose; the check is
    # a skip that says so in every report, and callers warn on every use.
    accept_unreleased: bool = False

    def enforces(self, check_id: str) -> bool:
        """Whether a skip of `check_id` refuses the evidence (a fail always does)."""
        if check_id in ALWAYS_ENFORCED or check_id in self.enforce or "*" in self.enforce:
            return True
        if check_id in _GPU_HARDWARE:
            return self.require_gpu
        if check_id == "gpu.measurements":
            return bool(self.gpu_rims)
        if check_id == "cpu.collateral":
            return self.tdx_require_collateral
        if check_id == "root.real":
            return not self.accepts_simulated
        if check_id == "release.inclusion":
            return self.release_view is not None
        if check_id == "cpu.paravisor":
            return not self.snp_allow_azure_paravisor
        return False

    def enforcement(self) -> dict[str, bool]:
        return {c: self.enforces(c) for c in CHECK_IDS}

    @property
    def accepts_simulated(self) -> bool:
        return SIMULATED in self.accepted_roots

    @property
    def pins_software(self) -> bool:
        """Whether the policy says which software may run: a release view or pinned
        measurements (a policy file from derive-policy)."""
        return self.release_view is not None or self.allowed_measurements is not None

    def with_releases(self, view: ReleaseView) -> Policy:
        return replace(self, release_view=view)

    def allowing_simulated(self) -> Policy:
        """The same policy that also accepts the locally generated simulated root. Everything that
        calls this must say so loudly (log a warning)."""
        return replace(self, accepted_roots=self.accepted_roots | {SIMULATED})


# ---------------------------------------------------------------------------------------------
# Loading


class _Reader:
    """Reads one table, recording every problem instead of stopping at the first."""

    def __init__(self, table: Mapping[str, Any], where: str, problems: list[str]) -> None:
        self.table, self.where, self.problems = table, where, problems
        self.used: set[str] = set()

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def problem(self, key: str, msg: str) -> None:
        self.problems.append(f"{self._name(key)}: {msg}")

    def get(self, key: str) -> Any:
        self.used.add(key)
        return self.table.get(key)

    def boolean(self, key: str, default: bool) -> bool:
        v = self.get(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            self.problem(key, "must be true or false")
            return default
        return v

    def integer(self, key: str, default: int | None, lo: int = 0, hi: int = 2**63) -> int | None:
        v = self.get(key)
        if v is None:
            return default
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            self.problem(key, f"must be an integer in {lo}..{hi}")
            return default
        return v

    def strings(
        self, key: str, check: Callable[[str], str | None] | None = None, value: Any = None
    ) -> frozenset[str] | None:
        v = self.get(key) if value is None else value
        if v is None:
            return None
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            self.problem(key, "must be a list of strings")
            return None
        if not v:
            self.problem(
                key,
                "is empty; an empty allow-list would allow nothing — remove the key "
                "to leave it unpinned, or list the allowed values",
            )
            return None
        out = set()
        for x in v:
            norm = x.lower() if check is not None else x
            err = check(norm) if check is not None else None
            if err:
                self.problem(key, f"{x!r} {err}")
            out.add(norm)
        return frozenset(out)

    def unknown(self) -> None:
        for key in sorted(set(self.table) - self.used):
            self.problem(key, "unknown key")


def _hexlen(*sizes: int) -> Callable[[str], str | None]:
    def check(s: str) -> str | None:
        try:
            n = len(bytes.fromhex(s))
        except ValueError:
            return "is not hex"
        return None if n in sizes else f"is {n} bytes; expected {' or '.join(map(str, sizes))}"

    return check


def _table(r: _Reader, key: str) -> Mapping[str, Any]:
    v = r.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        r.problem(key, "must be a table")
        return {}
    return v


def _read_files(r: _Reader, key: str, base_dir: Path | None) -> tuple[bytes, ...]:
    """A file name or a list of them (relative to the policy's directory), read now."""
    names = r.get(key)
    if names is None:
        return ()
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        r.problem(key, "must be a file name or a non-empty list of them")
        return ()
    out = []
    for name in names:
        path = Path(name) if base_dir is None else base_dir / name
        try:
            out.append(path.read_bytes())
        except OSError as exc:
            r.problem(key, f"cannot read {path}: {exc.strerror}")
    return tuple(out)


def policy_from_dict(data: Mapping[str, Any], base_dir: Path | None = None) -> Policy:
    """Build a Policy from parsed TOML/JSON; raises PolicyFileError listing every problem."""
    problems: list[str] = []
    top = _Reader(data, "", problems)
    version = top.get("version")
    if version != POLICY_VERSION:
        top.problem("version", f"must be {POLICY_VERSION}")
    roots = top.strings("accepted_roots")
    if roots is None and "accepted_roots" not in data:
        top.problem("accepted_roots", "is required (name the vendor roots you trust)")
    for name in sorted(roots or ()):
        if name not in KNOWN_ROOTS:
            top.problem(
                "accepted_roots", f"{name!r} is not a known root ({', '.join(sorted(KNOWN_ROOTS))})"
            )
    kw: dict[str, Any] = {"accepted_roots": roots or frozenset()}
    kw["max_evidence_age_s"] = top.integer("max_evidence_age_s", 3600, 1, 366 * 86400)
    kw["clock_skew_s"] = top.integer("clock_skew_s", 60, 0, 3600)
    kw["allow_debug"] = top.boolean("allow_debug", False)
    kw["allowed_measurements"] = top.strings("allowed_measurements", _hexlen(48))
    kw["allowed_platform_ids"] = top.strings("allowed_platform_ids", _hexlen(8, 16, 64))

    snp = _Reader(_table(top, "sev_snp"), "sev_snp", problems)
    tcb = _Reader(_table(snp, "min_tcb"), "sev_snp.min_tcb", problems)
    min_tcb = {}
    for comp in SNP_TCB_COMPONENTS:
        v = tcb.integer(comp, None, 0, 255)
        if v is not None:
            min_tcb[comp] = v
    tcb.unknown()
    kw["snp_min_tcb"] = min_tcb
    kw["snp_min_guest_svn"] = snp.integer("min_guest_svn", 0, 0, 2**32 - 1)
    kw["snp_allow_smt"] = snp.boolean("allow_smt", True)
    kw["snp_allow_migration_agent"] = snp.boolean("allow_migration_agent", False)
    kw["snp_max_vmpl"] = snp.integer("max_vmpl", None, 0, 3)
    kw["snp_allowed_host_data"] = snp.strings("allowed_host_data", _hexlen(32))
    kw["snp_allow_azure_paravisor"] = snp.boolean("allow_azure_paravisor", False)
    snp.unknown()

    tdx = _Reader(_table(top, "tdx"), "tdx", problems)
    rtmrs = {}
    for i in range(4):
        allowed = tdx.strings(f"rtmr{i}", _hexlen(48))
        if allowed is not None:
            rtmrs[i] = allowed
    kw["tdx_allowed_rtmrs"] = rtmrs
    kw["tdx_allowed_mr_seam"] = tdx.strings("allowed_mr_seam", _hexlen(48))
    svn = tdx.get("min_tee_tcb_svn")
    if svn is not None:
        err = _hexlen(16)(svn) if isinstance(svn, str) else "must be a hex string"
        if err:
            tdx.problem("min_tee_tcb_svn", f"{svn!r} {err}")
        else:
            kw["tdx_min_tee_tcb_svn"] = bytes.fromhex(svn)
    statuses = tdx.strings("accepted_tcb_status")
    for s in sorted(statuses or ()):
        if s not in TDX_TCB_STATUSES:
            tdx.problem("accepted_tcb_status", f"{s!r} is not an Intel TCB status")
    if statuses is not None:
        kw["tdx_accepted_tcb_status"] = statuses
    kw["tdx_require_collateral"] = tdx.boolean("require_collateral", False)
    docs = {
        key: _read_files(tdx, key, base_dir)
        for key in ("tcb_info_file", "qe_identity_file", "collateral_signing_chain_file")
    }
    tdx.unknown()
    col = _Reader(_table(top, "collateral"), "collateral", problems)
    collateral = Collateral(
        tdx_tcb_infos=docs["tcb_info_file"],
        tdx_qe_identities=docs["qe_identity_file"],
        intel_signing_chains=docs["collateral_signing_chain_file"],
        sources=("policy",) if any(docs.values()) else (),
    )
    cdir = col.get("dir")
    if cdir is not None:
        try:
            path = Path(str(cdir)) if base_dir is None else base_dir / str(cdir)
            collateral = collateral.merged(load_collateral_dir(path, source=f"policy {cdir}"))
        except (OSError, LimitError) as exc:
            col.problem("dir", f"cannot read collateral: {exc}")
    col.unknown()
    kw["collateral"] = collateral

    gpu = _Reader(_table(top, "gpu"), "gpu", problems)
    kw["require_gpu"] = gpu.boolean("required", False)
    gm = gpu.get("allowed_measurements")
    gpu_meas: dict[int, frozenset[str]] = {}
    if gm is not None:
        if not isinstance(gm, dict) or not gm:
            gpu.problem("allowed_measurements", "must be a non-empty table of index = [hex, …]")
        else:
            for k, v in gm.items():
                if not (isinstance(k, str) and k.isdigit() and 1 <= int(k) <= 254):
                    gpu.problem("allowed_measurements", f"index {k!r} is not 1..254")
                    continue
                allowed = gpu.strings(f"allowed_measurements.{k}", _hexlen(32, 48, 64), value=v)
                if allowed is not None:
                    gpu_meas[int(k)] = allowed
    kw["gpu_allowed_measurements"] = gpu_meas
    kw["gpu_allowed_driver_versions"] = gpu.strings("allowed_driver_versions")
    kw["gpu_allowed_vbios_versions"] = gpu.strings("allowed_vbios_versions")
    kw["gpu_rims"] = _read_files(gpu, "rim_files", base_dir)
    if (
        gpu_meas
        or kw["gpu_allowed_driver_versions"]
        or kw["gpu_allowed_vbios_versions"]
        or kw["gpu_rims"]
    ) and not kw["require_gpu"]:
        gpu.problem("required", "GPU values are pinned, so required must be true")
    gpu.unknown()
    models = _Reader(_table(top, "models"), "models", problems)
    kw["allowed_model_digests"] = {
        name: digests
        for name in sorted(models.table)
        if (digests := models.strings(name, _hexlen(32))) is not None
    }
    checks = _Reader(_table(top, "checks"), "checks", problems)
    enforce = checks.strings("enforce") or frozenset()
    for cid in sorted(enforce - CHECK_IDS - {"*"}):
        checks.problem("enforce", f"{cid!r} is not a check ({', '.join(sorted(CHECK_IDS))})")
    kw["enforce"] = enforce
    checks.unknown()
    for key in ("sev_snp", "tdx", "gpu", "models", "collateral", "checks"):
        top.get(key)
    top.unknown()
    if problems:
        raise PolicyFileError(problems)
    return Policy(**kw)


def load_policy(text: str, fmt: str = "toml", base_dir: Path | None = None) -> Policy:
    try:
        if fmt == "toml":
            data: Any = tomllib.loads(text)
        elif fmt == "json":
            data = json.loads(text)
        else:
            raise PolicyFileError([f"policy format {fmt!r} is not toml or json"])
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise PolicyFileError([f"policy is not valid {fmt}: {exc}"]) from exc
    if not isinstance(data, dict):
        raise PolicyFileError(["policy must be a table / object"])
    return policy_from_dict(data, base_dir)


def load_policy_file(path: Path) -> Policy:
    """Load a .toml or .json policy; collateral file names are relative to its directory."""
    fmt = "json" if path.suffix.lower() == ".json" else "toml"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyFileError([f"cannot read policy {path}: {exc}"]) from exc
    return load_policy(text, fmt, base_dir=path.parent)
