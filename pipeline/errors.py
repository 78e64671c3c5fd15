"""The pipeline's edge: errors a user can cause, printed on one line with exit code 2."""

from featuremap.errors import InputError


class UserError(InputError):
    """A problem with the user's input, config or command line; the message may name a CLI flag.

    The CLI catches `InputError` (this, and what features/, models/ and methods/ raise) and
    prints it on one line with exit code 2.
    """


class RunAlarm(UserError):
    """The run finished and committed every stage's outputs, but a stage found something that needs a person (exit 2:
    retrying does not help); the runner keeps the outputs."""
