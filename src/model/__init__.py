"""The model: the search space's rules (``search_space``), the CNN hypermodel
(``hypermodel``) and the training set-up every run shares (``backend``)."""
