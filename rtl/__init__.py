"""Amaranth 0.5 description of the Tessera accelerator. Imports golden/ for the config."""

from .accelerator import Accelerator
from .crossbar_tile import CrossbarTile
from .requantizer import Requantizer
from .sequencer import Sequencer
from .generate import generate_verilog

__all__ = ["Accelerator", "CrossbarTile", "Requantizer", "Sequencer", "generate_verilog"]
