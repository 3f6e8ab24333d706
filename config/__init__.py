"""The example configuration shipped as package data: `alkomctl init-config DIR` copies it (see README.md here)."""
