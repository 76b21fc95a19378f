"""Configuration: the parameter registry, main.cf and master.cf readers."""

from mailstack.config.maincf import Config, ConfigError, Environment, Setting, load  # noqa: F401
