"""MLflow tracking: every run the project writes (search, trials, final stage) is written here.

``tracker`` (parent and child runs), ``final_run`` (the final stage's run), ``records`` (how
facts become MLflow entities), ``tolerance`` (store trouble never fails a trial), ``store``
(open a store safely), ``provenance`` (versions, commit, flattened config).
"""
