"""Training hooks, registered in mmengine's root ``HOOKS`` and our scope."""
from .random_state_hook import (RANDOM_STATE_KEY, RandomStateHook,
                                get_random_state, set_random_state)

__all__ = [
    'RANDOM_STATE_KEY', 'RandomStateHook', 'get_random_state',
    'set_random_state'
]
