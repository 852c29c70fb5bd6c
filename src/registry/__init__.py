"""The Model Registry stage: log the final model, register it, and decide its aliases.

``model_log`` (MLflow's Keras flavour), ``versions`` (register, look up, load),
``lock`` and ``promote`` (champion or challenger), ``serving`` (the pyfunc loader shipped
inside every logged model) and ``predict`` (classify image files with a registered model).
"""
