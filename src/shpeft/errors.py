"""The one exception type that the command line turns into a single clear message."""


class ShpeftError(Exception):
    """A problem with the user's input (a params key, a data or weights file), not a bug.

    The message must name the file or key at fault; the command line prints it alone, without a
    traceback, and exits with status 1.
    """
