"""alkomd.drivers: one module per kind of hardware; each turns bytes from a transport into records."""
