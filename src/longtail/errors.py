"""Errors whose message is the whole story for the user: the command line shows the message
alone, without a stack trace (see ``longtail.cli``)."""


class UserFacingError(Exception):
    """A problem with the user's configuration or data, explained completely by its message."""
