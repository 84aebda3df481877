"""`tessera adc-trade`."""

from pathlib import Path

from ..options import DEFAULT_BUILD, POSITIVE_INT, UsageError, add_preset_option

def run(args):
    from tessera.experiments.adc_trade import run_adc_trade

    bits = sorted(set(args.adc_bits))
    if not bits or min(bits) < 2:
        raise UsageError(f"--adc-bits takes ADC widths of 2 bits or more, not {args.adc_bits}")
    print(f"Tessera ADC trade: {args.dataset}, ADC bits {bits}, with and without per-layer "
          f"calibration; golden model, {args.test_samples} test samples at most; energy "
          f"preset {args.preset}", flush=True)
    _, table, plots = run_adc_trade(args.dataset, tuple(bits), args.test_samples,
                                    preset=args.preset, out_dir=args.out,
                                    log=lambda message: print(message, flush=True))
    print("\n" + table)
    print("\nplots: " + ", ".join(str(p) for p in plots if p))



def add_parser(commands):
    parser = commands.add_parser(
         "adc-trade", help="accuracy, energy and TOPS/W against ADC bits, calibrated or not",
         description="Train a CNN (MNIST LeNet-5 or the digits CNN), quantise it, and for each "
                     "ADC width compile it with and without per-layer ADC calibration, run it on "
                     "the golden model, and tabulate and plot accuracy against energy per "
                     "inference and TOPS/W, with published efficiencies marked.")
    parser.add_argument("--dataset", choices=["mnist", "digits"], default="mnist",
                        help="mnist (LeNet-5, the default) or digits (the demo's CNN)")
    parser.add_argument("--adc-bits", type=int, nargs="+", default=[3, 4, 5, 6, 7, 8],
                        help="ADC widths (default: 3 4 5 6 7 8; 7 is lossless on 16x16 tiles)")
    parser.add_argument("--test-samples", type=POSITIVE_INT, default=1000,
                        help="test samples run at each point (default: 1000)")
    add_preset_option(parser)
    parser.add_argument("--out", type=Path, default=DEFAULT_BUILD / "adc_trade",
                        help="folder for the table and plots (default: build/adc_trade)")
    parser.set_defaults(handler=run)
    return parser
