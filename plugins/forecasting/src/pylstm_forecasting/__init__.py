"""pylstm-forecasting: the ``forecasting`` task plugin for pylstm.

Install with ``pip install ./plugins/forecasting``; then ``pylstm train forecasting``, and in
an application ``pylstm.load(run_dir)`` gives a :class:`~.predictor.Forecaster`
(``.predict(raw_windows)``, ``.forecast(series)``).

Modules: :mod:`.options` (the task's options), :mod:`.data` (datasets, CSV, windows),
:mod:`.model` (the network and its config), :mod:`.training` (the Trainer set-up),
:mod:`.predictor` (the trained forecaster), :mod:`.metrics`, :mod:`.baselines`,
:mod:`.onnx_export`, :mod:`.plotting`, :mod:`.task` (the protocol's methods).
"""

__version__ = "0.2.0"
