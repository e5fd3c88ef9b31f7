"""`python -m sfduck_core` and the `sfduck` command: the command line, wired to the emulator for
demo mode. The only module of the core that knows the emulator exists (an entry point)."""

import sys

from sfduck_core.cli import main
from sfduck_emulator import snowflake_source


def run() -> None:
    from sfduck_emulator.server import main as emulator_main

    sys.exit(main(source_for=snowflake_source, emulator=emulator_main))


if __name__ == "__main__":
    run()
