"""Formal proofs of the RTL with SymbiYosys (`make formal`; docs/testing.md)."""
