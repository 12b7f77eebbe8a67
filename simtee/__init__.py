"""A simulated SEV-SNP TEE for development, demos and tests — NOT a root of trust.

It produces evidence in the real AMD SEV-SNP attestation-report layout (1184 bytes, ECDSA P-384
over 0x000–0x29F, r/s little-endian) signed by a VCEK that chains VCEK → ASK → ARK, exactly like
AMD's, except that the ARK is generated locally and its subject says SIMULATED. Verifiers accept
it only under a policy that names the root "simulated" and when the operator hands them this root's
certificate; everything that does so logs a warning.

Kept outside `enclave/` so that the trusted worker code stays small and carries no signing root.
"""

from ccgw.simtee.vendor import SIMULATED_MEASUREMENT, SimulatedSnpTee, SimulatedVendor

__all__ = ["SIMULATED_MEASUREMENT", "SimulatedSnpTee", "SimulatedVendor"]
