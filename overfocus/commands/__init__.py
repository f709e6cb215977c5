"""One module per CLI sub-command; see overfocus/cli.py."""
