"""`sim.coverage` reads Verilator's coverage files as Verilator writes them: a hand-made
file of six points, counted by hand."""

from sim.coverage import (OPERATOR_TOGGLE, is_synthesised, merged_builds, summarise,
                          untoggled_signals)


def point(kind, module, line, comment, count):
    fields = {"f": "/b/x.v", "l": str(line), "n": "3", "t": kind,
              "page": f"v_{kind}/{module}", "o": comment, "h": module}
    key = "".join(f"\x01{k}\x02{v}" for k, v in fields.items())
    return f"C '{key}' {count}\n"


def test_merge_two_runs_and_count(tmp_path):
    build = tmp_path / "tile_cfg"
    build.mkdir()
    header = "# SystemC::Coverage-3\n"
    (build / "coverage_1.dat").write_text(header + point("line", "tile", 10, "block", 0)
                                          + point("line", "tile", 12, "block", 3)
                                          + point("toggle", "tile", 5, "a[0]:0->1", 0))
    # A second run of the same build hits line 10: merged, 2 of 2 lines.
    (build / "coverage_2.dat").write_text(header + point("line", "tile", 10, "block", 1)
                                          + point("toggle", "tile", 5, "a[0]:0->1", 0)
                                          + point("toggle", "tile", 5, "a[0]:1->0", 2)
                                          + point("toggle", "tile", 6, "__02412[3]:0->1", 0))
    builds = merged_builds(tmp_path)
    totals, missed = summarise(builds["tile_cfg"])
    assert totals[("line", "tile")] == [2, 2]
    assert totals[("toggle", "tile")] == [1, 2]
    assert totals[(OPERATOR_TOGGLE, "tile")] == [0, 1]     # yosys's `$12`, counted apart
    assert missed == []
    assert untoggled_signals(builds["tile_cfg"]) == {("tile", "a"): 1}
    # The first run alone leaves line 10 never run.
    (build / "coverage_2.dat").unlink()
    totals, missed = summarise(merged_builds(tmp_path)["tile_cfg"])
    assert totals[("line", "tile")] == [1, 2] and missed == [("x.v", 10, "tile")]


def test_fault_injection_builds_stand_apart():
    assert is_synthesised("accelerator_t2_r4_c1_cb2_d1_a5_sh1_m16-64-32-32-32")
    assert not is_synthesised("faulty_accelerator_t2_r4_c1_cb2_d1_a5_sh1_m16-64-32-32-32")
