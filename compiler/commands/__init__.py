"""One module per `runix` subcommand (see compiler.cli.COMMANDS)."""
