"""Optuna behind Keras Tuner's oracle: TPE sampling (``tuner=tpe``) and pruning for any tuner.

Keras Tuner has neither a TPE sampler nor cross-trial pruning; Optuna has both. Rather than
re-implement them, this module keeps an Optuna study beside a Keras Tuner oracle and talks
to it through the oracle's own hooks:

- ``populate_space`` (`OptunaOracle` only) asks the study for a trial and suggests a value
  for every *active* hyperparameter, in the order the hypermodel declared them, so a
  conditional one (the filters of a layer the trial does not build) stays unset;
- ``update_trial`` reports each epoch's objective to the study's trial and, when the study's
  pruner says so, returns the trial with status ``STOPPED``; the tuner side
  (``src.search.behaviours.ReportsEpochs``) then stops that trial's ``fit``;
- ``end_trial`` tells the study how the trial ended (complete, pruned or failed).

`OptunaStudyMixin` (``study``: pruning) goes before any Keras Tuner oracle class;
`OptunaOracle` (``oracle``) adds the sampling; ``tuner`` has the tuner class and
`enable_pruning`; ``specs`` turns config specs into Optuna objects. Because every decision
is taken in the oracle, and in the distributed mode the oracle lives on the chief, pruning
is central there too: workers only report epochs.

The study lives in the tuner's folder (Optuna's journal storage, ``optuna.journal``), so a
resumed search reloads it with the oracle; each Keras Tuner trial is one Optuna trial,
linked by the user attribute ``keras_tuner_trial_id``. A pruned trial ends with Keras
Tuner's status ``STOPPED`` (shown as ``PRUNED``), is scored on the epochs it ran, and is
never ranked among the completed ones.
"""
