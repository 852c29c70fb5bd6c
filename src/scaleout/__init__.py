"""Scale-out operations: PostgreSQL, the MLflow tracking server and the distributed search's
supervisor. No core module imports this package; it starts processes around them."""
