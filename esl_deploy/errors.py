"""User-facing errors.

An :class:`EslError` is a mistake in what the user asked for (a bad option, a missing or corrupt
file, an unsupported layer). The command line prints its message as one line on stderr and exits
with code 2. Anything else that escapes is a bug and keeps its traceback.
"""


class EslError(Exception):
    """A user error: reported as one line on stderr, exit code 2."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: raised in the main thread (as Ctrl-C raises KeyboardInterrupt) so that every
    ``finally`` and ``except BaseException`` on the way out runs -- temporary files and folders are removed,
    the run lock is released -- before the command line reports it in one line."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
