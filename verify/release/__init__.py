"""Released worker software: signed release manifests and revocations (manifest.py, canonical JSON
in canonical.py), the release policy that decides whether a verified worker runs released software
(policy.py), and the checkpoint checks that keep a client from being shown a split view of the log
(logview.py). Pure; shared by the client, the gateway and the auditor. See docs/adr/0010-releases.md."""
