"""Exceptions the library raises; the UI, the CLI and the API turn them into readable one-line messages."""


class LmdemoError(Exception):
    """Base class: the message is meant for the user, one line, naming the bad input."""


class ConfigError(LmdemoError, ValueError):
    """A setting has a value lmdemo cannot use."""


class ModelNotFoundError(LmdemoError):
    """A model name, Hub id or folder could not be resolved to loadable weights."""


class StoreError(LmdemoError):
    """Fetching or converting a built-in model failed."""


class AdapterError(LmdemoError):
    """An adapter folder is missing, unsafe or does not fit its base model."""


class HubError(LmdemoError):
    """The Hub refused or could not be reached."""


class InputError(LmdemoError):
    """A job got input it cannot work on (empty text, bad number, unknown language...)."""
