"""Host API: the running system, host messages and their completions."""

from kernbench.runtime.messages import (
    Completion,
    Hop,
    MemoryReadMsg,
    MemoryWriteMsg,
    Message,
    PeDmaMsg,
)
from kernbench.runtime.system import System

__all__ = [
    "Completion",
    "Hop",
    "MemoryReadMsg",
    "MemoryWriteMsg",
    "Message",
    "PeDmaMsg",
    "System",
]
