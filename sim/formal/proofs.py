"""Every proof `make formal` runs, each with the mutants that show it can fail."""

from dataclasses import dataclass
from functools import partial

from .axi_lite import axi_lite_proof
from .sby import Mutation
from .sequencer import SEQUENCER_CASES, bound, sequencer_termination_proof
from .tile import TILE_CASES, cycles_to_done, tile_equivalence_proof
from .uart_bridge import uart_bridge_proof

__all__ = ["Proof", "PROOFS"]


@dataclass(frozen=True)
class Proof:
    name: str
    build: object                  # () -> the Amaranth module holding design and assertions
    depth: int                     # k of the k-induction, or the cycles of a bounded check
    mutants: tuple                 # Mutations the proof must fail on
    survivors: tuple = ()          # Mutations it passes on, and why (not checked properties)
    mutant_depth: int = 0          # cycles from reset a mutant's counterexample may need
                                   # (bounded check; 0: the induction's depth)
    mode: str = "prove"            # "prove": k-induction; "bmc": bounded, from reset
    slow: bool = False             # minutes, not seconds: `make formal` only
    solver: str = "yices"          # smtbmc's: "yices" or "boolector" (see sim/formal/sby.py)

    def design_run(self):
        return dict(mode=self.mode, depth=self.depth, solver=self.solver)

    def mutant_run(self):
        """How a mutant is checked: by bounded model checking from reset, so that a
        failure is a real trace, never an induction that merely did not close."""
        return dict(mode="bmc", depth=self.mutant_depth or self.depth, solver=self.solver)


PROOFS = (
    Proof("axi_lite", axi_lite_proof, depth=8,
          mutants=(Mutation("axi__bresp", "inv", 1),        # OKAY and SLVERR swapped
                   Mutation("axi__bvalid", "const0"),       # a write never answered
                   Mutation("axi__rvalid", "const1")),      # a read answered unasked
          survivors=((Mutation("dut.last_was_read", "const1"),
                      "reads first when both wait: arbitration order, not a protocol rule"),)),
    Proof("uart_bridge", uart_bridge_proof, depth=8,
          mutants=(Mutation("total", "inv", 0),             # checksums summed wrong
                   Mutation("status", "inv", 0),            # a wrong status replied
                   Mutation("i_stream__ready", "const1"),   # bytes taken while busy
                   Mutation("o_stream__valid", "const0")),  # no reply: hangs
          mutant_depth=13),
    *(Proof(name, partial(sequencer_termination_proof, config, max_count), mode="bmc",
            depth=bound(config, max_count) + 3,     # the assertion looks at bound + 1
            mutants=(Mutation("dut.pc", "const0", 0),           # the pc stuck on even words
                     Mutation("dut.program.done", "const0"),    # a PROGRAM never ends
                     Mutation("dut.requant.done", "const0")),   # a REQUANT never ends
            slow=slow)
      for name, config, max_count, slow in SEQUENCER_CASES),
    *(Proof(name, partial(tile_equivalence_proof, config), mode="bmc",
            depth=cycles_to_done(config) + 1, solver="boolector",
            mutants=(Mutation("dut.product_offset_inputs", "const0"),  # offset ignored
                     Mutation("dut.first_step", "const0"),   # summed onto the last product
                     *([] if config.is_lossless else          # the ADC's range ignored
                       [Mutation("dut.product_adc_shift", "const0")])),
            slow=slow)
      for name, config, slow in TILE_CASES),
)
