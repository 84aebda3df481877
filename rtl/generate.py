"""Verilog generation, with the config written beside it as JSON."""

from pathlib import Path

from amaranth.back import verilog

__all__ = ["generate_verilog"]


def generate_verilog(component, out_dir, name):
    """Write ``<name>.v`` and ``<name>.json`` (the component's config) into `out_dir`.

    Returns the Verilog path. The file is rewritten only when its text changes, so
    simulator builds keyed on its timestamp stay cached.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(component, name=name, emit_src=False)
    files = {out_dir / f"{name}.v": text, out_dir / f"{name}.json": component.config.to_json()}
    for path, content in files.items():
        if not path.exists() or path.read_text() != content:
            path.write_text(content)
    return out_dir / f"{name}.v"
