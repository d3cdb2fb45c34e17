"""pylstm-translation: the ``translation`` task plugin for pylstm."""

__version__ = "0.1.0"
