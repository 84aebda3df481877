"""`tessera compile`."""

import sys
import warnings

import numpy as np

from ..loaders import load_inputs, load_labels, load_network
from ..options import (PERCENTILE, POSITIVE_INT, SPARSITY, UsageError, add_config_options,
                       compile_progress, config_from_args, refuse_overwrite)

PRUNING_AGREEMENT_WARNING = 0.95     # top-1 agreement with the unpruned model below this warns


def prune_honestly(args, network, layout, calibration, config):
    """Block-prune; fine-tune with the mask held when training data is given; then say how
    far the pruned model's outputs are from the unpruned one's, and warn when far."""
    from firmware.compiler.prune import prune_blocks
    from firmware.frontend.train import train

    if bool(args.train) != bool(args.labels):
        raise UsageError("fine-tuning needs both --train (inputs) and --labels")
    pruned, masks = prune_blocks(network, args.prune_blocks, config.rows, config.cols,
                                 layers=args.prune_layers)
    if args.train:
        x_train = load_inputs(args.train, "training data", network.input_shape, layout)
        y_train = load_labels(args.labels, len(x_train), network.shapes[-1][0])
        print(f"fine-tuning the {args.prune_blocks:.0%} block-pruned model on {len(x_train)} "
              f"samples, {args.finetune_epochs} epochs ...", flush=True)
        pruned = train(pruned, x_train, y_train, args.finetune_epochs,
                       np.random.default_rng(0), masks=masks)
    reference, basis = ((calibration, "calibration") if calibration is not None
                        else (x_train, "training") if args.train else (None, None))
    if reference is None:
        print(f"warning: pruned {args.prune_blocks:.0%} of the blocks without fine-tuning and "
              f"with no data to measure the cost; give --calibration, or --train and --labels",
              file=sys.stderr)
        return pruned
    before, after = network.forward(reference), pruned.forward(reference)
    agreement = float(np.mean(before.argmax(1) == after.argmax(1)))
    error = float(np.linalg.norm(after - before) / max(np.linalg.norm(before), 1e-30))
    print(f"pruned {args.prune_blocks:.0%} of the blocks{' and fine-tuned' if args.train else ''}: "
          f"top-1 agreement with the unpruned model {agreement:.1%}, relative output error "
          f"{error:.1%} (float, on the {len(reference)} {basis} samples)")
    if agreement < PRUNING_AGREEMENT_WARNING:
        advice = ("prune less" if args.train else
                  "fine-tune with --train X.npy --labels Y.npy, or prune less")
        print(f"warning: the pruned model agrees with the unpruned one on only {agreement:.1%} "
              f"of the {basis} samples (below {PRUNING_AGREEMENT_WARNING:.0%}): {advice}",
              file=sys.stderr)
    return pruned


def run(args):
    from firmware.compiler.build import build_executable
    from firmware.compiler.mapper import MappingError
    from firmware.compiler.pipeline import LossyAdcWarning
    from firmware.compiler.quantize import CalibrationWarning

    config = config_from_args(args)
    refuse_overwrite(args.out, {"network": args.network, "--calibration": args.calibration,
                                "--train": args.train, "--labels": args.labels,
                                "--fault-map": args.fault_map})
    if args.prune_layers and not args.prune_blocks:
        raise UsageError("--prune-layers names the layers --prune-blocks prunes: give "
                         "--prune-blocks too")
    faults = None
    if args.fault_map is not None:
        from golden.faults import FaultMap
        faults = FaultMap.load(args.fault_map)
        if faults.config != config:
            raise UsageError(f"--fault-map {args.fault_map} is for {faults.config.name}, not "
                             f"{config.name}: set the config options to the device's")
    if args.fault_pairs and (faults is None or config.tiles < 2):
        raise UsageError("--fault-pairs splits blocks around a fault map over two tiles: give "
                         "--fault-map, on a config of 2 tiles or more")
    network, layout, given, head = load_network(args.network)
    if args.calibration is None and given is None:
        raise UsageError(f"{args.network} is a float model: give --calibration data")
    calibration = None if args.calibration is None else \
        load_inputs(args.calibration, "calibration data", network.input_shape, layout)
    if args.prune_blocks:
        network = prune_honestly(args, network, layout, calibration, config)
    elif args.train or args.labels:
        raise UsageError("--train and --labels fine-tune a pruned model: give --prune-blocks")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LossyAdcWarning)
        warnings.simplefilter("always", CalibrationWarning)
        if given is not None:
            print(f"quantisation from {given.source}: its scales and zero points, no "
                  f"recalibration")
        try:
            exe = build_executable(
                network, config, calibration, given=given, method=args.method,
                percentile=args.percentile, input_layout=layout, head=head, batch=args.batch,
                adc_calibration=None if args.no_adc_calibration else calibration,
                progress=compile_progress(), faults=faults,
                fault_pairs=args.fault_pairs).executable
        except MappingError as error:
            raise UsageError(f"{args.network}: {error}") from None
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    exe.save(args.out)
    print("\n".join(exe.summary))
    print(f"wrote {args.out}")



def add_parser(commands):
    parser = commands.add_parser(
        "compile", help="quantise, prune and map a network into an executable file",
        description="Read a network (an ONNX model, float or quantised by onnxruntime as "
                    "QDQ or QOperator: see docs/compiler.md for the operators; or an .npz "
                    "with w0, b0, w1, b1, ..., weights (in, out)), optionally block-prune it "
                    "(measuring the cost, fine-tuning with --train and --labels), quantise it "
                    "to int8 with calibration data or with the model's own scales, map it "
                    "onto the accelerator (in segments when it does not fit the memories at "
                    "once) and save the executable: a zip of a JSON manifest and .npy arrays.")
    parser.add_argument("network", help="network .onnx or .npz")
    parser.add_argument("--calibration", default=None,
                        help="calibration inputs, .npy in the model's layout: (samples, "
                             "features), or (samples, C, H, W) for an ONNX CNN; needed for "
                             "a float model, not for a QDQ or QOperator one; with an ADC "
                             "below the lossless width it also sets each layer's ADC range")
    parser.add_argument("--no-adc-calibration", action="store_true",
                        help="convert every layer at ADC shift 0 even with --calibration "
                             "(to measure what calibration buys)")
    parser.add_argument("--method", choices=["minmax", "percentile"], default="minmax",
                        help="activation calibration (default: minmax)")
    parser.add_argument("--percentile", type=PERCENTILE, default=99.99, help="for --method percentile")
    parser.add_argument("--prune-blocks", type=SPARSITY, default=0.0, metavar="SPARSITY",
                        help="block sparsity aligned to rows x cols (default: 0)")
    parser.add_argument("--prune-layers", nargs="+", metavar="LAYER",
                        help="layers to prune (default: all)")
    parser.add_argument("--train", default=None, metavar="X.npy",
                        help="training inputs to fine-tune the pruned model on (with --labels); "
                             "without them compile measures and warns")
    parser.add_argument("--labels", default=None, metavar="Y.npy",
                        help="classes of the --train inputs, integers (samples,)")
    parser.add_argument("--finetune-epochs", type=POSITIVE_INT, default=20,
                        help="fine-tuning epochs (default: 20)")
    parser.add_argument("--batch", type=POSITIVE_INT, default=None,
                        help="samples a batch (default: the one that reloads weights least "
                             "often a sample; a segment whose memories hold fewer runs it in "
                             "sub-batches)")
    parser.add_argument("--fault-map", default=None, metavar="FILE",
                        help="the device's stuck cells (from `tessera bist`): each block is "
                             "written for the cells of its tile, and the bias takes back what "
                             "they add at rest (docs/compiler.md)")
    parser.add_argument("--fault-pairs", action="store_true",
                        help="with --fault-map: put each weight block on two tiles, its "
                             "weights split between them around both tiles' stuck cells "
                             "(about twice the tiles a block: more cycles, far fewer misses)")
    parser.add_argument("--out", default="compiled.tessera",
                        help="executable file, data only (default: compiled.tessera)")
    add_config_options(parser)
    parser.set_defaults(handler=run)
    return parser
