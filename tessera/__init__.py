"""Tessera: the command line and the names a user imports first."""

from golden import AccelConfig, ConfigError

__all__ = ["AccelConfig", "ConfigError"]
