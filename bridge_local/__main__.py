"""``python -m bridge_local --bridge HOST:PORT --app-port N --data-dir D``."""

import sys

from .server import main

sys.exit(main())
