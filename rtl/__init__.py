"""Amaranth 0.5 description of the Tessera accelerator. Imports golden/ for the config."""

from .crossbar_tile import CrossbarTile
from .generate import generate_verilog

__all__ = ["CrossbarTile", "generate_verilog"]
