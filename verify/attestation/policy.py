"""Attestation policy as data. Required wherever evidence is verified; there is no implicit
default that accepts everything, and the simulated root is accepted only when named."""

from __future__ import annotations

from dataclasses import dataclass, replace

from verify.attestation.roots import SIMULATED

REAL_ROOTS = frozenset({"amd-milan", "amd-genoa", "amd-turin", "intel-sgx", "nvidia-device"})


@dataclass(frozen=True)
class Policy:
    accepted_roots: frozenset[str] = REAL_ROOTS
    # Hex launch measurements (SEV-SNP MEASUREMENT / TDX MRTD) allowed; None = not pinned.
    # An empty set is refused when a policy is loaded (it would mean "allow nothing" by accident).
    allowed_measurements: frozenset[str] | None = None
    allow_debug: bool = False
    require_gpu: bool = False
    max_evidence_age_s: int = 3600
    clock_skew_s: int = 60

    @property
    def accepts_simulated(self) -> bool:
        return SIMULATED in self.accepted_roots

    def allowing_simulated(self) -> Policy:
        """The same policy that also accepts the locally generated simulated root. Everything that
        calls this must say so loudly (log a warning)."""
        return replace(self, accepted_roots=self.accepted_roots | {SIMULATED})
