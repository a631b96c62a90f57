"""The bundle command's errors, each with the sysexits(3) status it exits with."""
from __future__ import annotations

EX_USAGE = 64    # a bad option or argument
EX_DATAERR = 65  # the data or the classifier is not what the command needs
EX_NOINPUT = 66  # an input that does not exist or cannot be read


class BundleError(Exception):
    """A problem with the command's inputs, found before any training starts."""

    def __init__(self, message: str, status: int = EX_DATAERR):
        super().__init__(message)
        self.status = status


def usage_error(message: str) -> BundleError:
    return BundleError(message, EX_USAGE)


def no_input(message: str) -> BundleError:
    return BundleError(message, EX_NOINPUT)
