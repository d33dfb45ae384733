"""User benches for the CLI tests, registered from outside kernbench via ``bench.module``."""
