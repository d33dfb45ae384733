"""``hydra/sweeper=optuna``: a thin Hydra :class:`Sweeper` over Optuna (ADR 0031).

Hydra's own Optuna sweeper plugin pins ``optuna<3``, whose SQLite storage does not work with
the SQLAlchemy 2 that MLflow needs, so kernbench ships this one. Hydra imports every module
of ``hydra_plugins`` when it starts, so this one imports neither Optuna nor kernbench: the
study runs in :func:`kernbench.cli.search.run_search` (docs/search.md).

Its config is ``conf/hydra/sweeper/optuna.yaml`` in kernbench's config directory. Hydra finds
this class by scanning ``hydra_plugins``, which misses it in an editable install (setuptools'
import hook is invisible to ``pkgutil``); :class:`~kernbench.cli.sweep.SweepCallback`
registers it before Hydra instantiates the sweeper, so both installs work.
"""

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class KernbenchOptunaSweeper(Sweeper):
    def __init__(self, n_trials: int, n_jobs: int, storage: Any = None, params: Any = None):
        self.n_trials, self.n_jobs, self.storage, self.params = n_trials, n_jobs, storage, params
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from kernbench.cli.search import run_search

        return run_search(self, arguments)
