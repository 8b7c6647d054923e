"""Built-in alerts: conditions decided on the supervisor's tick (conditions.py, watch.py),
notices sent by a helper process through each configured channel (one module each)."""
