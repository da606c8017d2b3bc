from __future__ import annotations

import sys

from emulators.cli import main

sys.exit(main())
