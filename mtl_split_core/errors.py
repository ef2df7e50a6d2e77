"""The one error class for input a user gave that cannot be used.

Library functions raise ``InputError`` (or a subclass) for a bad file, name or option value,
with a message that names the input and says what was expected. The `mtl-split` command turns
it into one line on stderr and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """A file, name or option value a user gave that cannot be used (the message says why)."""
