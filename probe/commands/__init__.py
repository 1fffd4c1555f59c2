"""One module per CLI subcommand; see ``latentfield.probe.cli.COMMANDS``."""
