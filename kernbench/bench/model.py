"""The shape of a transformer LLM a bench runs (the ``model`` config group; docs/models.md).

A bench reads it as ``ctx.model``; one that does not model an LLM ignores it. The spec is data
only: sizes and the element type, checked against each other so that a bench can split them
without checking again. The dataclass defaults are the ``tiny`` preset, small enough that a run
that does not choose a model stays cheap.
"""

from dataclasses import dataclass
from typing import ClassVar

from kernbench.core.errors import ConfigError
from kernbench.core.specs import check_positive, param

# Element type name -> bytes per element.
DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}


@dataclass(frozen=True)
class ModelSpec:
    KEY: ClassVar[str] = "model"

    name: str = param("tiny", "name of the model preset")
    hidden: int = param(256, "hidden size (d_model), elements")
    heads: int = param(4, "attention (query) heads, count")
    kv_heads: int = param(2, "key/value heads, count; fewer than heads is GQA (divides heads)")
    head_dim: int = param(64, "elements per attention head; heads * head_dim = hidden")
    ffn: int = param(512, "intermediate size of the gated MLP, elements")
    layers: int = param(2, "transformer layers, count")
    vocab: int = param(512, "vocabulary size, tokens")
    norm_eps: float = param(1e-5, "epsilon of the RMSNorm")
    rope_theta: float = param(10000.0, "base of the rotary position embedding's frequencies")
    dtype: str = param("fp16", "element type of weights and activations: fp16 | bf16 | fp32")

    def __post_init__(self) -> None:
        check_positive(
            self,
            "hidden",
            "heads",
            "kv_heads",
            "head_dim",
            "ffn",
            "layers",
            "vocab",
            "norm_eps",
            "rope_theta",
        )
        if self.heads * self.head_dim != self.hidden:
            raise ConfigError(
                f"{self.KEY}.heads",
                f"heads * head_dim (model.head_dim) must equal model.hidden ({self.hidden}); "
                f"got {self.heads} * {self.head_dim} = {self.heads * self.head_dim}",
            )
        if self.heads % self.kv_heads:
            raise ConfigError(
                f"{self.KEY}.kv_heads",
                f"must divide model.heads ({self.heads}), each key/value head serving a group "
                f"of query heads; got {self.kv_heads}; use one of "
                f"{', '.join(map(str, _divisors(self.heads)))}",
            )
        if self.dtype not in DTYPE_BYTES:
            raise ConfigError(
                f"{self.KEY}.dtype",
                f"must be one of {', '.join(DTYPE_BYTES)}, got {self.dtype!r}",
            )

    @property
    def dtype_bytes(self) -> int:
        """Bytes per element of ``dtype``."""
        return DTYPE_BYTES[self.dtype]

    @property
    def kv_dim(self) -> int:
        """Width of the K (and of the V) projection: ``kv_heads * head_dim`` elements."""
        return self.kv_heads * self.head_dim


def check_tp(model: ModelSpec, tp: int, key: str = "bench.tp") -> None:
    """Raise a ConfigError naming ``key`` unless ``tp`` ranks can split ``model``'s attention:
    each rank takes ``heads / tp`` query heads and ``kv_heads / tp`` key/value heads, so ``tp``
    must divide both (it then divides ``hidden``, ``heads * head_dim``, too)."""
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise ConfigError(key, f"must be a positive number of ranks, got {tp!r}")
    valid = ", ".join(map(str, _divisors(model.kv_heads)))
    for field, count in (("heads", model.heads), ("kv_heads", model.kv_heads)):
        if count % tp:
            raise ConfigError(
                key,
                f"{tp} ranks cannot split model.{field} ({count}) of model {model.name!r} "
                f"evenly; use one of {valid}",
            )


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
