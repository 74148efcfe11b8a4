"""Shared pieces of slm's Python recipes (events, config, data, training step, checkpoints, merge).

Recipes are plain scripts run as `python recipes/<name>.py --config cfg.json`; this package sits next to them
and is imported by putting recipes/ on sys.path (the scripts do that themselves)."""
