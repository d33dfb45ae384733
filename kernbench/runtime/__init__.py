"""Host API: the running system, host messages, tensors, devices and kernel launch."""

from kernbench.runtime.device import LAUNCH_BYTES, Device, Launch, PeTiming
from kernbench.runtime.hub import Hub, Task
from kernbench.runtime.messages import (
    Completion,
    Hop,
    MemoryReadMsg,
    MemoryWriteMsg,
    Message,
    PeDmaMsg,
)
from kernbench.runtime.system import System
from kernbench.runtime.tensor import Placement, Tensor

__all__ = [
    "LAUNCH_BYTES",
    "Completion",
    "Device",
    "Hop",
    "Hub",
    "Launch",
    "MemoryReadMsg",
    "MemoryWriteMsg",
    "Message",
    "PeDmaMsg",
    "PeTiming",
    "Placement",
    "System",
    "Task",
    "Tensor",
]
