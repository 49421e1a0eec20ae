"""safeknob: blend a reckless and a safe expert with one knob, alpha.

Importing the package registers its environments with Gymnasium.
"""

from safeknob.envs import register_envs

__version__ = "0.1.0"

register_envs()
