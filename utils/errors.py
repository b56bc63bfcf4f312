"""Error types shared by modules that must not depend on each other's imports.

``ConfigError`` lives here, not in utils.training.config, so that raising it needs no
yacs and no PyYAML: losses.py checks OPTIM.LOSS with it and stays importable
where only torch is installed. utils.training.config re-exports it, so
``utils.training.config.ConfigError`` is this same class.
"""

__all__ = ['ConfigError']


class ConfigError(ValueError):
    """A configuration file or override is wrong."""
