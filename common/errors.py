"""The one exception type for errors a user can cause (bad input, bad config)."""


class UserError(Exception):
    """A problem with the user's input or config; the CLI prints it on one line and exits 2.

    The message names the file, column or key at fault and the fix.
    """
