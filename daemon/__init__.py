"""alkomd.daemon: the core (config, store, outbox, MQTT link, runtime, CLIs)."""

__version__ = "0.1.0"
