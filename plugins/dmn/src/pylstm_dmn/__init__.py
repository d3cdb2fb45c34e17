"""pylstm-dmn: the ``dmn`` task plugin for pylstm."""

__version__ = "0.1.0"
