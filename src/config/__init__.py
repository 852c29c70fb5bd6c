"""Configuration: compose ``conf/`` (``compose``), check it before anything heavy loads
(``rules``), and keep passwords out of what a run writes (``secrets``)."""
