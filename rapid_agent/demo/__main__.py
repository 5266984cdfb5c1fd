"""`python -m rapid_agent.demo`: the same as `python -m rapid_agent demo`."""

import argparse
import sys

from rapid_agent.demo import add_arguments, main

parser = argparse.ArgumentParser(prog="python -m rapid_agent.demo", description=__doc__)
add_arguments(parser)
sys.exit(main(parser.parse_args()))
