"""One module per command-line verb; each exposes ``add_arguments(parser)`` and ``run(args) -> int``."""
