"""Timing and peak-memory helpers of the benchmarks (not part of the test suite)."""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import sys
import time
from typing import Callable, Iterator

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call in ms (synchronised on CUDA)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return (time.perf_counter() - start) * 1e3


def median_time(fn: Callable[[], object], repeats: int, device: torch.device, warmup: int = 1) -> dict:
    """Median (and min, max) wall time in ms of `fn` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "runs": repeats}


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak of the bytes allocated while `fn` runs, above what was allocated before it, in MiB.

    CUDA: torch.cuda.max_memory_allocated. CPU: torch.profiler's memory timeline (every tensor allocation and free,
    in order, from the profiler's allocator hooks), replayed to find the largest live total. Includes outputs,
    tensors saved for backward, gradients and temporaries; excludes the inputs, which exist before. `fn` must not
    free tensors that existed before it (clear gradients beforehand): a free inside would offset the count.
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    try:
        from torch.profiler import ProfilerActivity, profile
        from torch.profiler._memory_profiler import Action
    except ImportError:  # a private API: report nothing rather than a wrong number
        return None
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True)
    with _silent_stderr():
        prof.start()
    try:
        fn()
    finally:
        with _silent_stderr():
            prof.stop()
    live = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:
        if action == Action.CREATE:
            live += size
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)
    return peak / 2**20


@contextlib.contextmanager
def _silent_stderr() -> Iterator[None]:
    """The process's stderr (file descriptor 2) sent to /dev/null: torch 2.13's profiler prints two "USDT: ...
    profiler_start/stop" lines from C++ at every start and stop, one pair per benchmark row, with no switch to turn
    them off. Only the profiler's start and stop run inside this, never the measured code."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
