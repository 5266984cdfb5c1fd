"""`python -m rapid_agent.demo`: the same as `python -m rapid_agent demo`."""

import sys

from rapid_agent.demo.command import main

sys.exit(main(sys.argv[1:], prog="python -m rapid_agent.demo"))
