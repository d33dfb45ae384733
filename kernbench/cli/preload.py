"""The last module the joblib workers' fork server imports (:func:`kernbench.cli.sweep.
warm_workers`): once kernbench and mlflow are loaded, freeze the heap so that the forked
workers' collections skip it (and its pages stay shared), and let the fork server end, when
the sweep does, without the final collections that would hold the command's exit for a second
or more (:mod:`kernbench.cli.heap`)."""

import gc

from kernbench.cli.heap import skip_exit_gc

gc.freeze()
skip_exit_gc()
