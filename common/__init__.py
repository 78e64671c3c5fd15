"""Types shared by features/, models/ and pipeline/: the feature map and the user-error type.

This package depends on nothing but the standard library, so every other
package may import it without breaking the one-way arrows of the
architecture (pipeline -> features, pipeline -> models).
"""
