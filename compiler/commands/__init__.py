"""One module per `runix` subcommand (see compiler.cli.COMMANDS); `common` holds what several share."""
