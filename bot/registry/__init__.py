"""MLflow's model registry: which version a serving alias points to, the versions before it,
and the metrics their training runs logged. `mlflow.py` is the REST adapter, `aliases.py`
remembers the alias moves the bot has seen, `models.py` says which registered model an
incident is about."""
