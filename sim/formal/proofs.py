"""Every proof `make formal` runs, each with the mutants that show it can fail."""

from dataclasses import dataclass

from .axi_lite import axi_lite_proof
from .sby import Mutation

__all__ = ["Proof", "PROOFS"]


@dataclass(frozen=True)
class Proof:
    name: str
    build: object                  # () -> the Amaranth module holding design and assertions
    depth: int                     # k of the k-induction
    mutants: tuple                 # Mutations the proof must fail on
    survivors: tuple = ()          # Mutations it passes on, and why (not checked properties)


PROOFS = (
    Proof("axi_lite", axi_lite_proof, depth=8,
          mutants=(Mutation("axi__bresp", "inv", 1),        # OKAY and SLVERR swapped
                   Mutation("axi__bvalid", "const0"),       # a write never answered
                   Mutation("axi__rvalid", "const1")),      # a read answered unasked
          survivors=((Mutation("dut.last_was_read", "const1"),
                      "reads first when both wait: arbitration order, not a protocol rule"),)),
)
