"""The sequencer and its units: the dispatcher (`Sequencer`) fetches an instruction, the
decoder checks it, and one unit per opcode runs it, each with a model and a delay from
:mod:`golden.timing` and a test of its own."""

from .adder_tree import AdderTree
from .decoder import InstructionDecoder
from .dispatcher import Sequencer
from .max_unit import MaxUnit
from .mvm_unit import MVMUnit
from .program_unit import ProgramUnit
from .requant_unit import RequantUnit

__all__ = ["Sequencer", "InstructionDecoder", "ProgramUnit", "MVMUnit", "AdderTree",
           "RequantUnit", "MaxUnit"]
