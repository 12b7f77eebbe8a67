"""Composition root: the `ccgw` command wires client, gateway, enclave and simtee together.

Only this package may import all of them; the import rules (tests/unit/test_import_rules.py)
keep client, gateway, enclave and verify apart.
"""
