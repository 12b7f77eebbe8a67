"""Hardware evidence: parse (bytes → frozen records) → verify (signatures, chains to pinned roots at
an injected `now`) → validate (fields against a Policy that is data). See bundle.verify_bundle."""
