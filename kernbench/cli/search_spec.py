"""The ``search`` config group: what a design-space search optimises (docs/search.md).

:class:`SearchSpec` is the schema of ``search.*``: the objectives (bench metric names), their
directions (from the metrics' definitions unless given), constraints, the study's name, the
sampler and its seed. :class:`Constraint` parses one constraint such as
``hw.hbm.pc_bw_gbs*8<=512`` with :mod:`ast` and evaluates it over a whitelist of arithmetic,
comparisons and ``min``/``max``/``abs``: a user's string is never given to ``eval``. A dotted
name is a config key when the config has it, else a metric of the run. Optuna is not
imported here, so the command line's checks stay fast (ADR 0031).
"""

import ast
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kernbench.bench.result import HIGHER, LOWER, metric_direction
from kernbench.core.errors import ConfigError

SAMPLERS = ("nsga2", "tpe")
MINIMIZE, MAXIMIZE = "minimize", "maximize"
OPTUNA_DIRECTION = {LOWER: MINIMIZE, HIGHER: MAXIMIZE}


@dataclass(frozen=True)
class SearchSpec:
    """``search.*``: read by ``hydra/sweeper=optuna`` only; a plain run or sweep ignores it,
    and it is no part of a run's params or config hash (ADR 0031)."""

    KEY: ClassVar[str] = "search"

    objectives: list[str] = field(
        default_factory=lambda: ["latency_ns"],
        metadata={"help": "bench metrics to optimise, e.g. [latency_ns,tflops]"},
    )
    directions: list[str] | None = field(
        default=None,
        metadata={"help": "minimize|maximize per objective; null: from the metric's definition"},
    )
    constraints: list[str] = field(
        default_factory=list,
        metadata={"help": "e.g. ['hw.hbm.pc_bw_gbs*8<=512', 'latency_ns<=1e4']"},
    )
    study: str | None = field(
        default=None,
        metadata={"help": "Optuna study name (resumed if it exists); null: <bench>-<hash>"},
    )
    sampler: str = field(default="nsga2", metadata={"help": "nsga2 | tpe"})
    seed: int = field(default=0, metadata={"help": "seed of the sampler"})
    population_size: int | None = field(
        default=None, metadata={"help": "NSGA-II generation size; null: Optuna's default (50)"}
    )

    def __post_init__(self) -> None:
        key = self.KEY
        if not self.objectives:
            raise ConfigError(f"{key}.objectives", "name at least one metric, e.g. [latency_ns]")
        if len(set(self.objectives)) != len(self.objectives):
            raise ConfigError(f"{key}.objectives", f"names a metric twice: {self.objectives}")
        if self.directions is not None:
            if len(self.directions) != len(self.objectives):
                raise ConfigError(
                    f"{key}.directions",
                    f"gives {len(self.directions)} direction(s) for {len(self.objectives)} "
                    "objective(s); give one per objective, or null",
                )
            bad = [d for d in self.directions if d not in (MINIMIZE, MAXIMIZE)]
            if bad:
                raise ConfigError(f"{key}.directions", f"{bad[0]!r}: use minimize or maximize")
        if self.sampler not in SAMPLERS:
            raise ConfigError(
                f"{key}.sampler", f"no sampler {self.sampler!r}; valid: {', '.join(SAMPLERS)}"
            )
        if self.population_size is not None and self.population_size < 2:
            raise ConfigError(f"{key}.population_size", "must be >= 2, or null")
        if self.study is not None and not self.study.strip():
            raise ConfigError(f"{key}.study", "must not be empty; null derives one")


def objective_directions(
    spec: SearchSpec, bench: str, better: Mapping[str, str | None]
) -> list[str]:
    """Optuna's direction of each objective: ``search.directions`` if given, else whether a
    lower or a higher value of the metric is better (the bench's declaration, then the unit)."""
    if spec.directions is not None:
        return list(spec.directions)
    out = []
    for name in spec.objectives:
        direction = metric_direction(name, better)
        if direction is None:
            raise ConfigError(
                f"{SearchSpec.KEY}.objectives",
                f"metric {name!r} of bench {bench!r} has no direction (neither the bench nor "
                "its unit says whether lower or higher is better); check the name, or give "
                "search.directions=[minimize|maximize,...]",
            )
        out.append(OPTUNA_DIRECTION[direction])
    return out


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCTIONS: dict[str, Callable[..., Any]] = {"min": min, "max": max, "abs": abs}
# How far each comparison is from holding: <= 0 when it holds (Optuna's feasibility).
_VIOLATION: dict[type, Callable[[float, float], float]] = {
    ast.Lt: lambda a, b: a - b,
    ast.LtE: lambda a, b: a - b,
    ast.Gt: lambda a, b: b - a,
    ast.GtE: lambda a, b: b - a,
}
_HOLDS: dict[type, Callable[[float, float], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


@dataclass(frozen=True)
class Constraint:
    """One constraint: a comparison (``<``, ``<=``, ``>``, ``>=``, chained too) of arithmetic
    over numbers, dotted names and ``min``/``max``/``abs``."""

    text: str
    tree: ast.Expression
    names: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, where: str = f"{SearchSpec.KEY}.constraints") -> "Constraint":
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError:
            raise ConfigError(where, f"{text!r} is not an expression, e.g. 'a.b*8<=512'") from None
        body = tree.body
        if not isinstance(body, ast.Compare) or not all(type(o) in _VIOLATION for o in body.ops):
            raise ConfigError(
                where, f"{text!r} must compare two sides with <, <=, > or >=, e.g. 'a.b*8<=512'"
            )
        names: list[str] = []
        for node in [body.left, *body.comparators]:
            _check_node(node, text, where, names)
        return cls(text, tree, tuple(dict.fromkeys(names)))

    def violation(self, values: Mapping[str, Any]) -> float:
        """How far the constraint is from holding: <= 0 when it holds, else > 0 (infinite
        where its arithmetic fails, a division by zero say)."""
        pairs = self._pairs(values)
        if pairs is None:
            return math.inf
        return max(_VIOLATION[type(op)](a, b) for op, a, b in pairs)

    def holds(self, values: Mapping[str, Any]) -> bool:
        pairs = self._pairs(values)
        return pairs is not None and all(_HOLDS[type(op)](a, b) for op, a, b in pairs)

    def _pairs(self, values: Mapping[str, Any]) -> list[tuple[ast.cmpop, float, float]] | None:
        body = self.tree.body
        assert isinstance(body, ast.Compare)
        try:
            sides = [_eval(n, values) for n in [body.left, *body.comparators]]
        except ArithmeticError:
            return None
        return list(zip(body.ops, sides[:-1], sides[1:], strict=True))

    def explain(self, values: Mapping[str, Any]) -> str:
        """The constraint with the values it saw, for a rejected trial's reason."""
        shown = ", ".join(f"{n}={values[n]!r}" for n in self.names if n in values)
        return f"{self.text} does not hold ({shown})" if shown else f"{self.text} does not hold"


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _check_node(node: ast.AST, text: str, where: str, names: list[str]) -> None:
    name = _dotted(node)
    if name is not None:
        names.append(name)
        return
    if isinstance(node, ast.Constant) and _is_number(node.value):
        return
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        _check_node(node.left, text, where, names)
        _check_node(node.right, text, where, names)
        return
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        _check_node(node.operand, text, where, names)
        return
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and node.args
        and not node.keywords
    ):
        for arg in node.args:
            _check_node(arg, text, where, names)
        return
    piece = ast.get_source_segment(text.strip(), node) or type(node).__name__
    raise ConfigError(
        where,
        f"{text!r}: {piece!r} is not allowed; use numbers, config keys or metric names, "
        "+ - * / // % **, min(), max() and abs()",
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _eval(node: ast.AST, values: Mapping[str, Any]) -> float:
    name = _dotted(node)
    if name is not None:
        value = values[name]
        if not _is_number(value):
            raise ConfigError(name, f"is {value!r}, not a number a constraint can compare")
        return value
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, values), _eval(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, values))
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    return _FUNCTIONS[node.func.id](*(_eval(a, values) for a in node.args))


def parse_constraints(texts: Sequence[str]) -> list[Constraint]:
    return [Constraint.parse(t, f"{SearchSpec.KEY}.constraints") for t in texts]


def finite(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)
