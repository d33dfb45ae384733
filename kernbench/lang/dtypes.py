"""Element types of the kernel language and of host tensors, as NumPy dtypes.

bfloat16 comes from ``ml_dtypes`` (the NumPy extension type JAX uses); NumPy has none of its
own.
"""

import ml_dtypes
import numpy as np

float16 = np.dtype(np.float16)
bfloat16 = np.dtype(ml_dtypes.bfloat16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int1 = np.dtype(np.bool_)
int8 = np.dtype(np.int8)
int16 = np.dtype(np.int16)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
uint8 = np.dtype(np.uint8)
uint16 = np.dtype(np.uint16)
uint32 = np.dtype(np.uint32)
uint64 = np.dtype(np.uint64)

# Names a host program or a config may use for a dtype.
BY_NAME = {
    "fp16": float16,
    "float16": float16,
    "bf16": bfloat16,
    "bfloat16": bfloat16,
    "fp32": float32,
    "float32": float32,
    "int8": int8,
    "int32": int32,
}


def dtype_of(value: object, key: str = "dtype") -> np.dtype:
    """The dtype named by ``value`` (a name above or a NumPy dtype); a clear error otherwise."""
    from kernbench.core.errors import ConfigError

    if isinstance(value, str):
        dt = BY_NAME.get(value)
        if dt is None:
            raise ConfigError(key, f"unknown dtype {value!r}; use one of {', '.join(BY_NAME)}")
        return dt
    try:
        dt = np.dtype(value)  # type: ignore[call-overload]
    except TypeError:
        raise ConfigError(key, f"not a dtype: {value!r}") from None
    if dt not in BY_NAME.values():
        raise ConfigError(key, f"unsupported dtype {dt}; use one of {', '.join(BY_NAME)}")
    return dt
