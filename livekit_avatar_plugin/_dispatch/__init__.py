"""Dispatch mode: the avatar renders in its own LiveKit agent worker.

``AvatarSession(mode="dispatch")`` asks LiveKit (AgentDispatchService) to dispatch an
avatar job into the agent's room; a worker started with ``livekit-avatar worker`` takes
it, joins as the avatar identity the agent chose (publishing on behalf of the agent),
receives the agent's speech over the data-stream transport and publishes the face with
the same publisher and generator as ``participant`` mode. Workers report their load as
active jobs / capacity, so LiveKit spreads jobs over workers and skips full ones.
"""

from .protocol import AvatarJobRequest

__all__ = ["AvatarJobRequest"]
