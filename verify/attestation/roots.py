"""The pinned roots a verifier accepts, by name.

Names are what policies list in `accepted_roots`: "amd-milan", "amd-genoa", "amd-turin",
"intel-sgx", "nvidia-device", and "simulated" (present only when a simulated root certificate is
explicitly added with `with_simulated`; never loaded by default). The AMD Genoa and Turin roots ship
their ASK and ASVK (the VLEK issuer). "nvidia-rim" is the root NVIDIA signs reference integrity
manifests under; it is used only for the RIM files a policy names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from cryptography import x509

from ccgw.verify.attestation.x509chain import load_pem_chain
from ccgw.verify.errors import MalformedError

SIMULATED = "simulated"

_PACKAGED = {
    "amd-milan": "amd_milan_ask_ark.pem",
    "amd-genoa": "amd_genoa_ask_ark.pem",
    "amd-turin": "amd_turin_ask_ark.pem",
    "intel-sgx": "intel_sgx_root_ca.pem",
    "nvidia-device": "nvidia_device_identity_ca.pem",
    "nvidia-rim": "nvidia_rim_root.pem",
}
# Further intermediates a root ships (AMD's ASVK, which issues VLEKs), read when present.
_EXTRA = {"amd-genoa": "amd_genoa_asvk.pem", "amd-turin": "amd_turin_asvk.pem"}
RIM_ROOT = "nvidia-rim"


@dataclass(frozen=True)
class Root:
    name: str
    cert: x509.Certificate
    # Intermediates shipped with the root (AMD's ASK): used to complete chains that omit them.
    intermediates: tuple[x509.Certificate, ...] = ()
    simulated: bool = False


@dataclass(frozen=True)
class RootStore:
    roots: dict[str, Root] = field(default_factory=dict)

    @classmethod
    def default(cls) -> RootStore:
        pkg = resources.files("ccgw.verify") / "roots"
        files = {n: pkg.joinpath(f).read_bytes() for n, f in _PACKAGED.items()}
        for n, f in _EXTRA.items():
            files[n] = pkg.joinpath(f).read_bytes() + files[n]
        return cls._from_files(files)

    @classmethod
    def from_dir(cls, directory: Path) -> RootStore:
        """Override the packaged roots: the same file names, read from `directory`."""
        found = {
            n: (directory / f).read_bytes()
            for n, f in _PACKAGED.items()
            if (directory / f).exists()
        }
        for n, f in _EXTRA.items():
            if n in found and (directory / f).exists():
                found[n] = (directory / f).read_bytes() + found[n]
        if not found:
            raise MalformedError(f"no root certificates found in {directory}")
        return cls._from_files(found)

    @classmethod
    def _from_files(cls, files: dict[str, bytes]) -> RootStore:
        roots: dict[str, Root] = {}
        for name, data in files.items():
            certs = load_pem_chain(data, name)
            roots[name] = Root(name=name, cert=certs[-1], intermediates=tuple(certs[:-1]))
        return cls(roots)

    def with_simulated(self, root_pem: bytes) -> RootStore:
        """A store that also knows the locally generated simulated root (still refused by any
        policy that does not name "simulated")."""
        certs = load_pem_chain(root_pem, "simulated root")
        sim = Root(name=SIMULATED, cert=certs[-1], intermediates=tuple(certs[:-1]), simulated=True)
        return RootStore({**self.roots, SIMULATED: sim})

    def rim_root(self) -> x509.Certificate | None:
        """The NVIDIA RIM signing root, which policies naming RIM files rely on."""
        root = self.roots.get(RIM_ROOT)
        return root.cert if root is not None else None

    def for_platform(self, accepted: frozenset[str], platform: str) -> list[Root]:
        """The roots a policy accepts for one evidence family ("sev-snp", "tdx", "nvidia").
        The simulated root produces SEV-SNP-format evidence, so it is an SNP candidate only."""
        prefix = {"sev-snp": "amd-", "tdx": "intel-", "nvidia": "nvidia-device"}[platform]
        return [
            r
            for n, r in sorted(self.roots.items())
            if n in accepted and (n.startswith(prefix) or (r.simulated and platform == "sev-snp"))
        ]
