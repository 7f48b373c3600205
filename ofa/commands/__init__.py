"""Subcommands of the `ofa` command line, one module each (see `ofa.cli`)."""
