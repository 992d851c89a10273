"""What every state machine under `protocols` does with an input its state does not take: it logs it at debug,
naming the state, and carries on (nothing here may raise into the relay)."""

from __future__ import annotations

import enum
import logging

log = logging.getLogger("llm_gateway.protocols")


def unexpected(owner: object, what: str, state: enum.Enum) -> None:
    """Log at debug that `what` reached `owner` in `state`, which does not take it."""
    log.debug("%s: %s in state %s", type(owner).__name__, what, state.name)
