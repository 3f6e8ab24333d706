"""alkomd.console: the dispatchers' web console, an MQTT client of the contract served by `alkomd-console`."""
