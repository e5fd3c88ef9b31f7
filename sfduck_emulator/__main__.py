from sfduck_emulator.server import main

raise SystemExit(main())
