"""Simulation settings (the ``sim`` config group)."""

from dataclasses import dataclass
from typing import ClassVar

from kernbench.core.errors import ConfigError
from kernbench.core.specs import check_positive, param

TRACE_LEVELS = ("off", "summary", "full")
MODELS = ("flit", "fluid")


@dataclass(frozen=True)
class SimSpec:
    KEY: ClassVar[str] = "sim"

    model: str = param(
        "fluid",
        "transfer model: fluid (flows sharing the links as FIFOs do, a few events per transfer "
        "whatever its size) | flit (one event per flit per hop, the reference); "
        "docs/fluid-model.md",
    )
    flit_bytes: int = param(256, "flit size; equal to the HBM burst by default, bytes")
    ns_per_mm: float = param(0.01, "wire propagation delay, ns per mm")
    read_request_bytes: int = param(64, "size of a read request travelling to memory, bytes")
    trace: str = param(
        "summary",
        "observation: off | summary (per-link and per-unit statistics) | full (also spans for "
        "a Perfetto trace); a sweep runs with off unless sim.trace is set on the command line",
    )
    trace_max_events: int = param(2_000_000, "cap on recorded spans with trace=full, events")
    num_stages: int = param(
        3,
        "default software-pipelining depth of a kernel launch, as Triton's num_stages: loads "
        "in flight per load of a loop; 1 = every call blocks (docs/kernels.md)",
    )

    def __post_init__(self) -> None:
        check_positive(
            self, "flit_bytes", "ns_per_mm", "read_request_bytes", "trace_max_events", "num_stages"
        )
        if isinstance(self.num_stages, bool) or not isinstance(self.num_stages, int):
            raise ConfigError(
                f"{self.KEY}.num_stages", f"must be a positive integer, got {self.num_stages!r}"
            )
        if self.read_request_bytes > self.flit_bytes:
            raise ConfigError(
                f"{self.KEY}.read_request_bytes",
                f"a read request is one flit: must be <= sim.flit_bytes ({self.flit_bytes}), "
                f"got {self.read_request_bytes}",
            )
        if self.model not in MODELS:
            raise ConfigError(
                f"{self.KEY}.model", f"must be one of {', '.join(MODELS)}, got {self.model!r}"
            )
        if self.trace not in TRACE_LEVELS:
            raise ConfigError(
                f"{self.KEY}.trace", f"must be one of {', '.join(TRACE_LEVELS)}, got {self.trace!r}"
            )
