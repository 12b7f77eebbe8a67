"""Launch measurements computed offline from the files a confidential VM boots: the SEV-SNP launch
digest (snp.py) and the TDX MRTD and RTMRs (tdx.py), from an OVMF/TDVF image (firmware.py) and
the direct-boot kernel, initrd and command line (boot.py). Pure functions over bytes; every input
is hostile and bounded (verify.limits)."""
