"""`python -m ofa ...` is the `ofa` command."""
from ofa.cli import entry

entry()
