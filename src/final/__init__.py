"""The final stage: choose a trial, retrain it, evaluate it once on the test split, report.

``choose`` (which trial), ``retrain`` (from scratch, per seed, ensembles), ``evaluation``
(test metrics), ``register`` (to the registry), ``report`` (figures, model card),
``stage`` (the whole stage), ``study`` (the table of ``make reproduce``'s stages).
"""
