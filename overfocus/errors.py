"""The project's error type: a one-line message that says what is wrong and how to fix it."""


class OverfocusError(ValueError):
    """Bad input from a user. The CLI prints the message alone and exits with code 2.

    Example:
        >>> raise OverfocusError("no images in /data/x: point --data at a folder of class folders")
        Traceback (most recent call last):
        ...
        overfocus.errors.OverfocusError: no images in /data/x: point --data at a folder of class folders
    """
