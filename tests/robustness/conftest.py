"""The hostile suite's tally, printed at the end of every run that ran any of it."""
from hostile import summary


def pytest_terminal_summary(terminalreporter):
    line = summary()
    if line:
        terminalreporter.write_line(line)
