"""pylstm-captioning: the ``captioning`` task plugin for pylstm."""

__version__ = "0.1.0"
