"""safeknob: blend a reckless and a safe expert with one knob, alpha.

Importing the package registers its environments with Gymnasium (and, in a pool worker,
first arms the signal that ends it with its parent: :mod:`safeknob.worker`).
"""

from safeknob.worker import arm_if_pool_worker

arm_if_pool_worker()

from safeknob.envs import register_envs  # noqa: E402

__version__ = "0.1.0"

register_envs()
