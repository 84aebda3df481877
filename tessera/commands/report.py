"""`tessera report`."""

import json

from firmware.runtime.report import energy_key
from golden import AccelConfig

from ..options import UsageError, add_host_link_option, add_preset_option
from .run import RUN_DIGEST

def check_run_record(record, path):
    """The fields `tessera report` uses, checked: every counter present and a
    non-negative integer, a positive sample count, host words likewise."""
    from golden.regmap import COUNTERS

    if not isinstance(record, dict):
        raise UsageError(f"run file {path} holds {type(record).__name__}, not a run record")
    for key in ("config", "samples", "counters", "backend"):
        if key not in record:
            raise UsageError(f"run file {path} has no {key!r} field")
    samples = record["samples"]
    if isinstance(samples, bool) or not isinstance(samples, int) or samples <= 0:
        raise UsageError(f"run file {path}: samples must be a positive integer, not {samples!r}")
    counters = record["counters"]
    if not isinstance(counters, dict):
        raise UsageError(f"run file {path}: counters must be an object of counter values")
    for name in COUNTERS:
        value = counters.get(name)
        if name not in counters:
            raise UsageError(f"run file {path}: counter {name!r} is missing")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"run file {path}: counter {name!r} must be a non-negative "
                             f"integer, not {value!r}")
    host = record.get("host_words", {})
    for way, counts in (host.items() if isinstance(host, dict) else [("host_words", host)]):
        if not isinstance(counts, dict) or any(isinstance(v, bool) or not isinstance(v, int) or v < 0
                                               for v in counts.values()):
            raise UsageError(f"run file {path}: host_words[{way!r}] must map memories to "
                             f"non-negative word counts")


def report_record(record, config, summary):
    """What `tessera report --json` prints: every figure with its unit and basis in its
    name (per inference, or the whole run for the counters)."""
    return {
        "samples": record["samples"], "backend": record["backend"],
        "batches": record.get("batches"), "config": config.to_dict(),
        "config_name": config.name, "preset": summary["preset"],
        "cycles_per_inference": summary["cycles_per_inference"],
        **{energy_key(where): summary[energy_key(where)]
           for where in ("components", "total", "on_chip", "off_chip")},
        "host_words_per_inference": summary["host_words_per_inference"],
        "host_cycles_per_inference": summary["host_cycles_per_inference"],
        "host_link": summary["host_link"],
        "tops_per_watt_on_chip": summary["tops_per_watt"],
        "counters_whole_run": record["counters"],
    }


def run(args):
    from firmware.data_files import check_readable, record_digest
    from firmware.runtime.report import energy_summary

    path = check_readable(args.run, "run")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"run file {path} is not JSON ({error})") from None
    if not isinstance(record, dict) or RUN_DIGEST not in record:
        raise UsageError(f"run file {path} has no {RUN_DIGEST}: not written by this "
                         f"Tessera's `tessera run`; run it again")
    if record[RUN_DIGEST] != record_digest(record, RUN_DIGEST):
        raise UsageError(f"run file {path}: {RUN_DIGEST} does not match its fields: the file "
                         f"was edited or damaged after `tessera run` wrote it")
    check_run_record(record, path)
    config = AccelConfig.from_dict(record["config"])
    summary = energy_summary(record["counters"], config, record["samples"], args.preset,
                             record.get("host_words"), args.host_link)
    if args.json:
        print(json.dumps(report_record(record, config, summary), indent=1))
        return
    batch = f", batches of {record['batch']}" if "batch" in record else ""
    print(f"{record['samples']} samples on {record['backend']}, {config.name}{batch}; "
          f"{summary['preset']}; per inference:")
    print(f"  cycles                {summary['cycles_per_inference']:10.1f}")
    components = summary[energy_key("components")]
    for component, joules in [("total", summary[energy_key("total")]),
                              *sorted(components.items(), key=lambda kv: -kv[1])]:
        print(f"  {component:<20}  {joules * 1e9:10.3f} nJ")
    print(f"  on chip               {summary[energy_key('on_chip')] * 1e9:10.3f} nJ")
    print(f"  host words            {summary['host_words_per_inference']:10.1f} (32 bits each)")
    print(f"  host transfer cycles  {summary['host_cycles_per_inference']:10.1f} (not in the "
          f"cycles above; {summary['host_link']})")
    print(f"  TOPS/W (on chip)      {summary['tops_per_watt']:10.3f}")
    print("counters (whole run): " + ", ".join(f"{k}={v}" for k, v in record["counters"].items()))
    if args.energies:
        from golden.energy import PRESETS, describe
        print(f"energy per event, {summary['preset']} scaled to {config.name}:")
        print("\n".join("  " + line for line in describe(PRESETS[args.preset], config)))



def add_parser(commands):
    parser = commands.add_parser("report", help="energy breakdown and TOPS/W of a run",
                                 description="Energy per inference by component, and TOPS/W, "
                                             "from the counters a `tessera run` saved.")
    parser.add_argument("run", help="file written by `tessera run`")
    add_preset_option(parser, listed=True)
    parser.add_argument("--json", action="store_true",
                        help="print the figures as one JSON object (joules per inference by "
                             "component, cycles, TOPS/W, the run's counters)")
    add_host_link_option(parser)
    parser.add_argument("--energies", action="store_true",
                        help="also list the preset's energy per event, scaled to the run's "
                             "config, with its basis")
    parser.set_defaults(handler=run)
    return parser
