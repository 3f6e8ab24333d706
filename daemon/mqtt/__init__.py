"""MQTT: the contract (every topic and payload in and out), the broker link, and the outbox publisher."""
