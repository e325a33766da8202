"""Which compute dtype this machine runs fast: bfloat16 where the hardware has it, else float32.

One place for the question that the embed job, the prediction job, `trainer.predict`
and the timeline (`--compute_dtype=auto`) and the trainer (`--mixed_precision`'s
warning) ask:

- CPUs: bfloat16 is native with the `avx512_bf16` or `amx_bf16` flags
  (/proc/cpuinfo, Linux); oneDNN then runs bfloat16 convolutions about twice
  as fast as float32. Without them TensorFlow emulates it, slower than float32.
- GPUs: bfloat16 is native from compute capability 8.0 (Ampere) on.
"""

from __future__ import annotations

import logging
from typing import Iterable, Optional

from schemas.errors import UsageError

logger = logging.getLogger(__name__)

COMPUTE_DTYPES = ("auto", "float32", "bfloat16", "float16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# Keras dtype policy per compute dtype: weights stay float32, the layers compute in the dtype.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
CPUINFO = "/proc/cpuinfo"


def compute_dtype_help(what: str, where: str) -> str:
    """The `--compute_dtype` help of every command: `what` computes in it, resolved `where`."""
    return (f"dtype {what} computes in (its weights stay float32): auto = bfloat16 where the "
            f"hardware has it (GPUs of compute capability >= 8.0, CPUs with avx512_bf16 or AMX), "
            f"else float32; {where}")


def _cpuinfo_field(key: str, cpuinfo_text: Optional[str] = None) -> Optional[str]:
    """The first value of `key` in /proc/cpuinfo (or in `cpuinfo_text`); None where there is none."""
    if cpuinfo_text is None:
        try:
            with open(CPUINFO, encoding="utf-8", errors="replace") as f:
                cpuinfo_text = f.read()
        except OSError:  # not Linux
            return None
    for line in cpuinfo_text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


def cpu_flags(cpuinfo_text: Optional[str] = None) -> set:
    """The CPU feature flags of /proc/cpuinfo (or of `cpuinfo_text`); empty where there is none."""
    return set((_cpuinfo_field("flags", cpuinfo_text) or "").split())


def cpu_model(cpuinfo_text: Optional[str] = None) -> str:
    """The CPU's model name with spaces as underscores (for key=value lines); "unknown" where
    there is none."""
    name = _cpuinfo_field("model name", cpuinfo_text)
    return name.replace(" ", "_") if name else "unknown"


def cpu_has_bf16(cpuinfo_text: Optional[str] = None) -> bool:
    """True on CPUs that compute bfloat16 natively (avx512_bf16 or AMX)."""
    return bool(cpu_flags(cpuinfo_text) & set(CPU_BF16_FLAGS))


def gpus_have_bf16(compute_capabilities: Optional[Iterable[tuple]] = None) -> Optional[bool]:
    """True when every visible GPU has compute capability >= 8.0; None without GPUs."""
    if compute_capabilities is None:
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        compute_capabilities = []
        for gpu in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(gpu)
            compute_capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    capabilities = list(compute_capabilities)
    if not capabilities:
        return None
    return all(tuple(c) >= (8, 0) for c in capabilities)


def bf16_is_native(cpuinfo_text: Optional[str] = None,
                   compute_capabilities: Optional[Iterable[tuple]] = None) -> bool:
    """Whether bfloat16 runs in hardware where TensorFlow computes: the GPUs if any, else the CPU."""
    gpus = gpus_have_bf16(compute_capabilities)
    return gpus if gpus is not None else cpu_has_bf16(cpuinfo_text)


def resolve_compute_dtype(name: str, cpuinfo_text: Optional[str] = None,
                          compute_capabilities: Optional[Iterable[tuple]] = None) -> str:
    """`auto` -> bfloat16 where it is native (`bf16_is_native`), else float32; others as given.

    UsageError (a ValueError) for a name not in COMPUTE_DTYPES.
    """
    if name not in COMPUTE_DTYPES:
        raise UsageError(f"--compute_dtype={name}: use one of {', '.join(COMPUTE_DTYPES)}")
    if name != "auto":
        return name
    return "bfloat16" if bf16_is_native(cpuinfo_text, compute_capabilities) else "float32"


def compute_dtype_warning(compute_dtype: str, cpuinfo_text: Optional[str] = None,
                          compute_capabilities: Optional[Iterable[tuple]] = None) -> str:
    """Why inference in `compute_dtype` (resolved) is slow here; "" where it is not.

    Allowed anyway, as the embed job allows it: float16 without GPUs, and
    bfloat16 where it is not native (`bf16_is_native`), are emulated.
    """
    if compute_dtype == "float16" and gpus_have_bf16(compute_capabilities) is None:
        return "--compute_dtype=float16 is meant for GPUs; on CPU it is emulated and slow"
    if compute_dtype == "bfloat16" and not bf16_is_native(cpuinfo_text, compute_capabilities):
        return ("--compute_dtype=bfloat16 is emulated on this machine (no GPU of compute "
                "capability >= 8.0, no CPU avx512_bf16 or AMX): slower than float32")
    return ""


def mixed_precision_warning(mixed_precision: str, tpu: bool = False,
                            cpuinfo_text: Optional[str] = None,
                            compute_capabilities: Optional[Iterable[tuple]] = None) -> str:
    """Why the trainer's `--mixed_precision` (none | bf16 | fp16) is slow here; "" where it is not.

    bf16 is native on TPUs, on GPUs of compute capability >= 8.0 and on CPUs with
    avx512_bf16 or AMX; fp16 on GPUs. Elsewhere TensorFlow emulates the dtype,
    slower than float32.
    """
    if mixed_precision == "none" or tpu:
        return ""
    gpus = gpus_have_bf16(compute_capabilities)
    if mixed_precision == "fp16":
        return "" if gpus is not None else (
            "--mixed_precision=fp16 is meant for accelerators; on CPU it is slow")
    if gpus or (gpus is None and cpu_has_bf16(cpuinfo_text)):
        return ""
    where = ("GPUs of compute capability < 8.0" if gpus is not None
             else "a CPU without avx512_bf16 or AMX")
    return (f"--mixed_precision=bf16 is meant for accelerators and CPUs with avx512_bf16 or "
            f"AMX; on {where} it is slow")
