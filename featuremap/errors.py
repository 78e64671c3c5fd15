"""The error a layer raises for bad input: data, a file or a setting it was given."""


class InputError(Exception):
    """A problem with the data or settings a layer was given, phrased for the person who gave them.

    The message names the file, column or setting at fault and the fix, in the layer's own terms (a
    setting by its config key, never a CLI flag); the pipeline's edge turns it into one line and exit 2.
    """
