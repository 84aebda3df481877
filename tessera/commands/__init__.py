"""One module per `tessera` command, each with `add_parser(commands)` (its options and
help) and `run(args)` (its exit status)."""

from . import adc_trade, bist, build, compile, demo, generate, report, run, sweep, tile_check

# In the order `tessera --help` lists them: the flow, then the experiments and the RTL tools.
COMMANDS = (compile, run, report, sweep, demo, adc_trade, generate, tile_check, build,
            bist)
