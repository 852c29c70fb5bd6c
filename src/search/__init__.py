"""The search stage: Keras Tuner with the project's hooks, behaviours and records.

``tuner_factory`` builds the configured tuner; ``behaviours`` and ``observers`` are what it
adds to Keras Tuner's hooks; ``stage`` runs the search; ``results`` summarises it into
``results.json``; ``progress`` prints one line per trial; ``run_state`` guards a run folder;
``distributed`` is Keras Tuner's chief/worker mode; ``optuna/`` is TPE and pruning.
"""
