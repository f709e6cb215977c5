import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while Python loads the libraries: nothing was started yet
    print("overfocus: interrupted while starting; nothing was done", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
