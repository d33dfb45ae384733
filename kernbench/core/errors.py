"""Errors a user can cause. Each message names the config key or object and what is valid."""


class KernbenchError(Exception):
    """Base of every error kernbench reports to a user (exit code 2 on the command line)."""


class ConfigError(KernbenchError):
    """A configuration value is of the wrong type, unknown, or semantically invalid."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


class AddressError(KernbenchError):
    """A physical address falls outside every window of the topology."""


class RouteError(KernbenchError):
    """No route exists between two named components."""


class BenchError(KernbenchError):
    """A bench was asked for something it cannot do (unknown bench, case or parameter)."""


class SimulationError(KernbenchError):
    """The simulation cannot continue, e.g. it deadlocked with processes still waiting."""


class KernelError(KernbenchError):
    """A kernel or a host program did something the model cannot execute (an out-of-bounds load,
    mismatched shapes or dtypes, a launch on PEs the topology does not have)."""


class AllocationError(KernbenchError):
    """A tensor or a block does not fit the memory it was placed in (HBM slice or TCM)."""
