"""Entry point for `python -m rapid_agent`."""

import sys

from rapid_agent.cli import main

sys.exit(main())
