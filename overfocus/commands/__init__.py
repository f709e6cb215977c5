"""One module per CLI sub-command; see overfocus/cli.py. Each imports the library inside the functions
that run its command, so that `overfocus --help` and a bad option answer without loading torch."""
