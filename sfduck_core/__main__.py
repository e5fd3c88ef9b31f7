import sys

from sfduck_core.cli import main

sys.exit(main())
