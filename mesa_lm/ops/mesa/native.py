"""The compiled CPU kernels of the mesa layer (C++ in `cpp_jacobi_cg.py`, `cpp_lower_inverse.py`, `cpp_products.py`):
built on first use, cached, called by ctypes.

On a CPU, most of the gated mesa layer's time is its conjugate gradient, and in eager torch most of that is per-call
overhead and passes over vectors that do not stay in cache. The kernel solves the same systems with the same stopping
rule as `MesaSolver._fine_jacobi_cg` (the eager reference, which remains the path on GPUs, under torch.compile and
wherever the kernel cannot be built), one sub-chunk at a time in cache, on torch's intra-op thread count (by OpenMP).
The Woodbury solves' small Cholesky factors and their inverses (`triangular.lower_inverse`) likewise: torch calls
LAPACK on one small matrix at a time.

Building needs a C++ compiler (`$CXX`, else c++, g++ or clang++ on the PATH) and nothing else: the source includes
no Python or torch headers and compiles in a few seconds. The library is cached in `mesa_lm.cache.cache_dir()`
(`$MESA_LM_CACHE`, else `$XDG_CACHE_HOME/mesa_lm` or `~/.cache/mesa_lm`), keyed by the source, the compiler and the
CPU (it is built for the machine it runs on), and written atomically: concurrent processes never load a partial file.

`MESA_LM_NATIVE`: `auto` (default) uses the kernel where it builds and warns once where it cannot; `0` never uses it;
`1` requires it (an error where it cannot be built).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import torch

from ...cache import cache_dir
from .cpp_jacobi_cg import NAME as CG_NAME, SOURCE as CG_SOURCE
from .cpp_lower_inverse import NAME as INVERSE_NAME, SOURCE as INVERSE_SOURCE
from .cpp_products import NAME as PRODUCTS_NAME, SOURCE as PRODUCTS_SOURCE

Tensor = torch.Tensor

# (file name, C++ source): compiled together into one library; the header is included by the two sources.
SOURCES = ((CG_NAME, CG_SOURCE), (INVERSE_NAME, INVERSE_SOURCE))
HEADERS = ((PRODUCTS_NAME, PRODUCTS_SOURCE),)
ENV_MODE = "MESA_LM_NATIVE"
MODES = ("auto", "0", "1")
INTERFACE_VERSION = 4  # mesa_jacobi_cg_version() of a build this module can call
# Compiler flags, tried in order: tuned for this CPU and with OpenMP first, then without what the compiler rejects.
# OpenMP: the library then needs libgomp.so.1; where torch's wheel ships its libgomp under that soname (torch 2.13's
# Linux wheels do) the kernel's threads are torch's own intra-op threads (separate Python threads competed with them
# while they spin-wait); a wheel with a renamed copy leaves the kernel its own OpenMP runtime (correct, but the two
# pools then compete).
FLAG_SETS = (("-O3", "-march=native", "-fopenmp"), ("-O3", "-fopenmp"), ("-O3", "-march=native"), ("-O3",))
COMPILE_TIMEOUT_S = 300

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_failure: str | None = None  # why the kernel could not be built (then the eager solver runs)
_warned = False
_threaded = False  # whether the loaded build has OpenMP


def mode() -> str:
    """`MESA_LM_NATIVE`, checked: auto (default), 0 or 1."""
    value = os.environ.get(ENV_MODE, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV_MODE}={value!r}; expected one of {MODES} (auto: the compiled CG kernel if it builds)")
    return value


def applies(b: Tensor) -> bool:
    """Whether a solve with right-hand sides b takes the kernel: on CPU, float32 or float64, not under torch.compile
    (a ctypes call cannot be traced), not where autograd would need to differentiate through it (the ops call the
    solvers inside their own backward), the kernel enabled and built."""
    if b.device.type != "cpu" or b.dtype not in (torch.float32, torch.float64) or torch.compiler.is_compiling():
        return False
    if b.requires_grad and torch.is_grad_enabled():
        return False
    if library() is None:
        return False
    # A build without OpenMP (the compiler rejected -fopenmp) runs on one thread: with more, the eager solver's
    # threaded torch operations may be faster.
    return _threaded or torch.get_num_threads() == 1


def library() -> ctypes.CDLL | None:
    """The loaded kernel, built on first use; None where it is disabled or cannot be built (warned once in `auto`
    mode, an error in mode 1)."""
    global _library, _failure, _warned, _threaded
    m = mode()
    if m == "0":
        return None
    if _library is None and _failure is None:
        with _lock:
            if _library is None and _failure is None:
                try:
                    _library = _build_and_load()
                    if not _threaded and m == "auto":
                        warnings.warn(
                            "mesa_lm: the compiled kernels were built without OpenMP (the compiler rejected "
                            "-fopenmp): they run only when torch uses one thread; the eager solver runs otherwise.",
                            RuntimeWarning,
                            stacklevel=3,
                        )
                except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                    _failure = f"{type(e).__name__}: {e}"
    if _library is None:
        if m == "1":
            raise RuntimeError(f"{ENV_MODE}=1 but the compiled CG kernel could not be built: {_failure}")
        if not _warned:
            _warned = True
            warnings.warn(
                f"mesa_lm: the compiled CG kernel of the mesa layer could not be built ({_failure}); the eager solver "
                f"runs instead, slower on CPU. Set {ENV_MODE}=0 to choose that and silence this.",
                RuntimeWarning,
                stacklevel=3,
            )
    return _library


def jacobi_cg(
    h: Tensor,
    k: Tensor,
    kb: Tensor,
    a: Tensor | None,
    dec: Tensor,
    lam: Tensor,
    b: Tensor,
    tol: float,
    max_iter: int,
    sub_chunk: int,
) -> tuple[Tensor, Tensor, Tensor, int]:
    """`MesaSolver._fine_jacobi_cg`'s solve by the kernel. h: (G, B, H, D, D) chunk-start states; k, kb, b:
    (G, B, H, C, D); a: (G, B, H, C) or None (ungated); dec: (G, B, H, C, C), or the (C, C) causal mask when a is
    None; lam: (H, D). Returns x (G, B, H, C, D), the not-converged mask (G, B, H, C, 1), each chunk's largest
    diagonal entry of H_t + Lambda (G,) and the most iterations any sub-chunk ran."""
    lib = library()
    G, B, H, C, D = b.shape
    dtype = b.dtype
    fn = lib.mesa_jacobi_cg_f32 if dtype == torch.float32 else lib.mesa_jacobi_cg_f64
    h, k, kb, dec, lam, b = (t.to(dtype).contiguous() for t in (h, k, kb, dec, lam, b))
    a = None if a is None else a.to(dtype).contiguous()
    x = torch.empty_like(b)
    active = torch.empty(G, B, H, C, dtype=torch.uint8)
    peak = torch.empty(G, B, H, dtype=dtype)
    iters = torch.empty(G, B, H, dtype=torch.int32)
    pointers = [t.data_ptr() for t in (h, k, kb)] + [None if a is None else a.data_ptr()]
    pointers += [t.data_ptr() for t in (dec, lam, b)]
    outs = [t.data_ptr() for t in (x, active, peak, iters)]
    max_iter = min(max_iter, 2**31 - 1)  # a C int
    status = fn(G * B * H, max(1, torch.get_num_threads()), H, C, sub_chunk, D, *pointers, float(tol), max_iter, *outs)
    if status:
        raise RuntimeError(f"mesa_lm: the compiled CG kernel rejected its arguments (status {status})")
    return x, active.bool()[..., None], peak.flatten(1).amax(1), int(iters.max())


def lower_inverse(m: Tensor) -> Tensor:
    """`triangular.lower_inverse` by the kernel: L^{-1} for the Cholesky factors L of SPD matrices m (..., n, n),
    zero above the diagonal (NaN from the first non-positive pivot of a matrix that is not positive definite)."""
    lib = library()
    n = m.shape[-1]
    mc = m.contiguous()
    out = torch.empty_like(mc)
    fn = lib.mesa_lower_inverse_f32 if m.dtype == torch.float32 else lib.mesa_lower_inverse_f64
    count = mc.numel() // (n * n) if n else 0
    if count:
        status = fn(count, max(1, torch.get_num_threads()), n, mc.data_ptr(), out.data_ptr())
        if status:
            raise RuntimeError(f"mesa_lm: the compiled inverse kernel rejected its arguments (status {status})")
    return out


def _cpu_identity() -> str:
    """What -march=native depends on: the CPU model and its feature flags."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def _compiler() -> str:
    for cxx in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if cxx and shutil.which(cxx):
            return shutil.which(cxx)
    raise RuntimeError("no C++ compiler found (set CXX, or install g++ or clang++)")


def _build_and_load() -> ctypes.CDLL:
    """The cached library for this source, compiler and CPU, compiled first if needed, with the first flag set that
    both compiles and loads."""
    global _threaded
    source = "".join(text for _, text in SOURCES + HEADERS).encode()
    cxx = _compiler()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    suffix = ".dylib" if sys.platform == "darwin" else ".so"
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for flags in FLAG_SETS:
        parts = (cxx, version, " ".join(flags), platform.machine(), _cpu_identity())
        key = hashlib.sha256(source + "\0".join(parts).encode()).hexdigest()[:20]
        path = folder / f"mesa_kernels-{key}{suffix}"
        failed = path.with_name(path.name + ".failed")  # a flag set that failed here before is not tried again
        if failed.exists():
            errors.append(f"{' '.join(flags)}: failed before ({failed})")
            continue
        if not path.exists():
            with tempfile.TemporaryDirectory(prefix="mesa_kernels-", dir=folder) as build:
                for name, text in SOURCES + HEADERS:
                    Path(build, name).write_text(text)
                out = Path(build, path.name)
                cmd = [cxx, *flags, "-std=c++17", "-shared", "-fPIC", "-o", str(out)]
                cmd += [str(Path(build, name)) for name, _ in SOURCES]
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
                if done.returncode != 0:
                    last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
                    errors.append(f"{' '.join(cmd)}: {last[0]}")
                    failed.write_text(f"{' '.join(cmd)}\n{done.stderr}")
                    continue
                os.replace(out, path)  # atomic: another process sees no file or the whole file
        try:
            lib = _load(path)
            _threaded = "-fopenmp" in flags
            return lib
        except OSError as e:  # e.g. built with OpenMP where no OpenMP runtime can be loaded
            errors.append(f"loading {path}: {e}")
    raise RuntimeError("; ".join(errors))


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    if lib.mesa_jacobi_cg_version() != INTERFACE_VERSION:
        raise RuntimeError(f"{path} has interface {lib.mesa_jacobi_cg_version()}, expected {INTERFACE_VERSION}")
    ptr, i32, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
    for fn in (lib.mesa_jacobi_cg_f32, lib.mesa_jacobi_cg_f64):
        # (N, threads, heads, C, cs, D, h, k, kb, a, dec, lam, b, tol, max_iter, x, active, peak, iters)
        fn.restype = i32
        fn.argtypes = [i64, i32, i32, i32, i32, i32, *[ptr] * 7, ctypes.c_double, i32, *[ptr] * 4]
    for fn in (lib.mesa_lower_inverse_f32, lib.mesa_lower_inverse_f64):
        fn.restype = i32
        fn.argtypes = [i64, i32, i32, ptr, ptr]  # (N, threads, n, m, out)
    return lib
