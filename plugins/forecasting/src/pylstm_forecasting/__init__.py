"""pylstm-forecasting: the ``forecasting`` task plugin for pylstm.

Install with ``pip install ./plugins/forecasting``; then ``pylstm train forecasting``.
Modules: :mod:`.data` (datasets, CSV, windows), :mod:`.metrics`, :mod:`.baselines`,
:mod:`.model` (the LSTM forecaster), :mod:`.onnx_export`, :mod:`.plotting`, :mod:`.task`.
"""

__version__ = "0.1.0"
