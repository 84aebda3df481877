"""Prints what the RTL checks counted, after the run (also under pytest-xdist)."""


def pytest_terminal_summary(terminalreporter):
    lines = [value for outcome in ("passed", "failed")
             for report in terminalreporter.stats.get(outcome, [])
             if report.when == "call"
             for key, value in report.user_properties if key == "rtl_check"]
    if lines:
        terminalreporter.section("RTL vs golden model")
        for line in sorted(lines):
            terminalreporter.write_line(line)
