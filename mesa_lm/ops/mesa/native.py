"""The compiled CPU kernels of the mesa layer (C++ in `cpp_jacobi_cg.py`, `cpp_lower_inverse.py`,
`cpp_chunk_states.py`, `cpp_linear_chunks.py`, with the shared `cpp_products.py`): built on first use, cached, called by
ctypes.

On a CPU, most of the gated mesa layer's time is its conjugate gradient, and in eager torch most of that is per-call
overhead and passes over vectors that do not stay in cache. The kernel solves the same systems with the same stopping
rule as `MesaSolver._fine_jacobi_cg` (the eager reference, which remains the path on GPUs, under torch.compile and
wherever the kernel cannot be built), one sub-chunk at a time in cache, on torch's intra-op thread count (by OpenMP).
The Woodbury solves' small Cholesky factors and their inverses (`triangular.lower_inverse`) likewise: torch calls
LAPACK on one small matrix at a time. Around the solves, the layer's chunk decays and boundary states
(`cpp_chunk_states.py`), its read-out and its backward (`cpp_linear_chunks.py`) are each one call per group of chunks,
fused per chunk or per (batch, head), in place of a few dozen small torch operations whose fixed cost, not their
arithmetic, was most of the time with two threads; the eager `chunking` functions remain their reference.

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ...cache import cache_dir
from .cpp_chunk_states import NAME as STATES_NAME, SOURCE as STATES_SOURCE
from .cpp_jacobi_cg import NAME as CG_NAME, SOURCE as CG_SOURCE
from .cpp_linear_chunks import NAME as LINEAR_NAME, SOURCE as LINEAR_SOURCE
from .cpp_lower_inverse import NAME as INVERSE_NAME, SOURCE as INVERSE_SOURCE
from .cpp_products import NAME as PRODUCTS_NAME, SOURCE as PRODUCTS_SOURCE

Tensor = torch.Tensor

# (file name, C++ source): compiled together into one library; the header is included by the two sources.
SOURCES = (
    (CG_NAME, CG_SOURCE),
    (INVERSE_NAME, INVERSE_SOURCE),
    (STATES_NAME, STATES_SOURCE),
    (LINEAR_NAME, LINEAR_SOURCE),
)
HEADERS = ((PRODUCTS_NAME, PRODUCTS_SOURCE),)
ENV_MODE = "MESA_LM_NATIVE"
MODES = ("auto", "0", "1")
INTERFACE_VERSION = 5  # mesa_jacobi_cg_version() of a build this module can call
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
_tuned = True  # False where a build with -march=native failed and a later flag set was loaded
_tuning_failure = ""  # why


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
                    if not _tuned and m == "auto":
                        warnings.warn(
                            "mesa_lm: the compiled kernels were built without -march=native, which the compiler "
                            f"rejected ({_tuning_failure}); on x86 such a build can be several times slower. Set CXX "
                            f"to a compiler that accepts it, or {ENV_MODE}=0 to use the torch code.",
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
    G, B, H, C, D = b.shape
    dtype = b.dtype
    _check_shapes("jacobi_cg", (a, dec), h=(h, (G, B, H, D, D)), k=(k, b.shape), kb=(kb, b.shape), lam=(lam, (H, D)))
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
    _call("jacobi_cg", dtype, (G * B * H,), H, C, sub_chunk, D, *pointers, float(tol), max_iter, *outs)
    return x, active.bool()[..., None], peak.flatten(1).amax(1), int(iters.max())


def lower_inverse(m: Tensor) -> Tensor:
    """`triangular.lower_inverse` by the kernel: L^{-1} for the Cholesky factors L of SPD matrices m (..., n, n),
    zero above the diagonal (NaN from the first non-positive pivot of a matrix that is not positive definite)."""
    n = m.shape[-1]
    _check_shapes("lower_inverse", m=(m, (*m.shape[:-2], n, n)))
    mc = m.contiguous()
    out = torch.empty_like(mc)
    count = mc.numel() // (n * n) if n else 0
    if count:
        _call("lower_inverse", m.dtype, (count,), n, mc.data_ptr(), out.data_ptr())
    return out


def _pointer(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _entry(name: str, dtype: torch.dtype):
    """The kernel `mesa_<name>` for dtype. Any dtype but float32 and float64 is a TypeError: the kernel of the other
    would read and write past the tensors' memory."""
    suffix = {torch.float32: "f32", torch.float64: "f64"}.get(dtype)
    if suffix is None:
        raise TypeError(f"mesa_lm.ops.mesa.native.{name}: dtype {dtype}; the kernels take float32 or float64")
    lib = library()
    if lib is None:
        raise RuntimeError(f"mesa_lm.ops.mesa.native.{name}: the kernels are off ({ENV_MODE}=0) or could not be built")
    return getattr(lib, f"mesa_{name}_{suffix}")


def _call(name: str, dtype: torch.dtype, counts: tuple[int, ...], *args) -> None:
    """Runs the kernel `mesa_<name>` for dtype on torch's intra-op thread count, which every kernel takes right after
    its item counts (`counts`: (N,), or (G, B H) for those that scan over a group's chunks), before `args`. A
    nonzero status is an error: the kernel checked its sizes and did nothing."""
    status = _entry(name, dtype)(*counts, max(1, torch.get_num_threads()), *args)
    if status:
        raise RuntimeError(f"mesa_lm: the compiled {name} kernel rejected its arguments (status {status})")


def _check_shapes(fn: str, decay: tuple[Tensor | None, Tensor] | None = None, **tensors) -> None:
    """Each given (tensor, shape) pair has that shape (None tensors are skipped), and for decay = (a, dec), dec is
    (..., C, C) with a's leading shape, or (C, C) when a is None: the kernels index raw memory by these shapes."""
    if decay is not None:
        a, dec = decay
        C = dec.shape[-1]
        tensors["dec"] = (dec, (C, C) if a is None else (*a.shape, C))
    for name, (t, shape) in tensors.items():
        if t is not None and tuple(t.shape) != tuple(shape):
            got, want = tuple(t.shape), tuple(shape)
            raise ValueError(f"mesa_lm.ops.mesa.native.{fn}: {name} has shape {got}; expected {want}")


def chunk_states(
    k: Tensor, v: Tensor, gamma: Tensor | None, beta: Tensor | None, h0: Tensor, g0: Tensor
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor, Tensor] | None, Tensor, Tensor]:
    """A group's written keys and values, decays and chunk-boundary states by the kernel (see `cpp_chunk_states.py`).
    k: (G, B, H, C, D); v: (G, B, H, C, Dv); gamma, beta: (G, B, H, C) or None (= 1); h0: (B, H, D, D), g0:
    (B, H, Dv, D) the states at the group's start. Returns kb, vb (k and v themselves without beta), (a, dec, wlast,
    alast) as `chunking.Decay` (None without gamma), hs (G + 1, B, H, D, D) and gs (G + 1, B, H, Dv, D)."""
    G, B, H, C, D = k.shape
    Dv = v.shape[-1]
    dtype = k.dtype
    gate = (G, B, H, C)
    _check_shapes(
        "chunk_states", v=(v, (G, B, H, C, Dv)), gamma=(gamma, gate), beta=(beta, gate), h0=(h0, (B, H, D, D)),
        g0=(g0, (B, H, Dv, D)),
    )
    k, v, h0, g0 = (t.to(dtype).contiguous() for t in (k, v, h0, g0))
    gamma, beta = (None if t is None else t.to(dtype).contiguous() for t in (gamma, beta))
    kb, vb = (k, v) if beta is None else (torch.empty_like(k), torch.empty_like(v))
    decay = None
    a = dec = wlast = alast = None
    if gamma is not None:
        a, wlast = torch.empty_like(gamma), torch.empty_like(gamma)
        dec, alast = k.new_empty(G, B, H, C, C), k.new_empty(G, B, H)
        decay = (a, dec, wlast, alast)
    hs, gs = k.new_empty(G + 1, B, H, D, D), k.new_empty(G + 1, B, H, Dv, D)
    args = [_pointer(t) for t in (k, v, gamma, beta, h0, g0, kb, vb, a, dec, wlast, alast, hs, gs)]
    _call("chunk_states", dtype, (G, B * H), C, D, Dv, *args)
    return kb, vb, decay, hs, gs


def read_out(x: Tensor, k: Tensor, vb: Tensor, gs: Tensor, a: Tensor | None, dec: Tensor) -> Tensor:
    """`chunking.linear_forward_group(x, k, vb, gs, a, dec)` by the kernel (see `cpp_linear_chunks.py`): the outputs
    (G, B, H, C, Dv) of a group of chunks. x, k: (G, B, H, C, D); vb: (G, B, H, C, Dv); gs: (G, B, H, Dv, D) the
    chunk-start states; a: (G, B, H, C) or None; dec: (G, B, H, C, C), or (C, C) when a is None."""
    G, B, H, C, D = x.shape
    Dv = vb.shape[-1]
    dtype = x.dtype
    _check_shapes(
        "read_out", (a, dec), k=(k, x.shape), vb=(vb, (G, B, H, C, Dv)), gs=(gs, (G, B, H, Dv, D)), a=(a, (G, B, H, C))
    )
    x, k, vb, gs, dec = (t.to(dtype).contiguous() for t in (x, k, vb, gs, dec))
    a = None if a is None else a.to(dtype).contiguous()
    out = x.new_empty(G, B, H, C, Dv)
    args = [_pointer(t) for t in (x, k, vb, gs, a, dec, out)]
    _call("read_out", dtype, (G * B * H,), C, D, Dv, *args)
    return out


def query_grads(
    dout: Tensor, vb: Tensor, k: Tensor, gs: Tensor, a: Tensor | None, dec: Tensor
) -> tuple[Tensor, Tensor]:
    """The backward's `output_scores(dout, vb, dec)` and `query_grad_group(scale(dout, a), k, gs, p_G, None)` of one
    group of chunks by the kernel (see `cpp_linear_chunks.py`). dout, vb: (G, B, H, C, Dv); k: (G, B, H, C, D);
    gs: (G, B, H, Dv, D) the chunk-start states; a: (G, B, H, C) or None; dec: (G, B, H, C, C), or (C, C) when a is
    None. Returns p_G (G, B, H, C, C) and r (G, B, H, C, D)."""
    G, B, H, C, Dv = dout.shape
    D = k.shape[-1]
    dtype = dout.dtype
    _check_shapes(
        "query_grads", (a, dec), vb=(vb, dout.shape), k=(k, (G, B, H, C, D)), gs=(gs, (G, B, H, Dv, D)),
        a=(a, (G, B, H, C)),
    )
    dout, vb, k, gs, dec = (t.to(dtype).contiguous() for t in (dout, vb, k, gs, dec))
    a = None if a is None else a.to(dtype).contiguous()
    pg = dout.new_empty(G, B, H, C, C)
    r = dout.new_empty(G, B, H, C, D)
    args = [_pointer(t) for t in (dout, vb, k, gs, a, dec, pg, r)]
    _call("query_grads", dtype, (G * B * H,), C, D, Dv, *args)
    return pg, r


def chunk_backward(
    inputs: tuple[Tensor, ...],
    gates: tuple[Tensor | None, ...],
    states: tuple[Tensor, Tensor],
    grads: tuple[Tensor, Tensor, Tensor],
    dstate: tuple[Tensor, Tensor],
    dlam: Tensor,
    need: tuple[bool, bool],
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, Tensor, Tensor]:
    """The rest of `chunk._backward_group` for one group of chunks by the kernel (see `cpp_linear_chunks.py`).

    inputs: x, k, kb (G, B, H, C, D), vb, v (G, B, H, C, Dv; v None without beta); gates: beta, a (G, B, H, C) or
    None, dec, wlast (G, B, H, C) and alast (G, B, H) or None; states: hs (G, B, H, D, D), gs (G, B, H, Dv, D) at
    the chunks' starts; grads: dout (G, B, H, C, Dv), m = -dq (G, B, H, C, D), p_G (from `query_grads`); dstate:
    the gradients with respect to the states at the group's end, (B, H, D, D) and (B, H, Dv, D); dlam (B, H, D),
    added into; need: (dbeta, dc). Returns dk, dv, dbeta or None, dc or None (G, B, H, C), and the gradients with
    respect to the states at the group's start."""
    x, k, kb, vb, v = inputs
    beta, a, dec, wlast, alast = gates
    G, B, H, C, D = x.shape
    Dv = vb.shape[-1]
    dtype = x.dtype
    gate, cd, cv = (G, B, H, C), x.shape, (G, B, H, C, Dv)
    _check_shapes(
        "chunk_backward", (a, dec), k=(k, cd), kb=(kb, cd), vb=(vb, cv), v=(v, cv), beta=(beta, gate), a=(a, gate),
        wlast=(wlast if a is not None else None, gate), alast=(alast if a is not None else None, (G, B, H)),
        hs=(states[0], (G, B, H, D, D)), gs=(states[1], (G, B, H, Dv, D)), dout=(grads[0], cv), m=(grads[1], cd),
        pg=(grads[2], (G, B, H, C, C)), dh=(dstate[0], (B, H, D, D)), dg=(dstate[1], (B, H, Dv, D)),
        dlam=(dlam, (B, H, D)),
    )
    if a is not None and (wlast is None or alast is None):
        raise ValueError("mesa_lm.ops.mesa.native.chunk_backward: a gated call needs wlast and alast")
    ins = [None if t is None else t.to(dtype).contiguous() for t in (*inputs, *gates, *states, *grads)]
    dh, dg = (t.to(dtype).contiguous().clone() for t in dstate)
    dk, dv = x.new_empty(G, B, H, C, D), x.new_empty(G, B, H, C, Dv)
    dbeta = x.new_empty(G, B, H, C) if need[0] and beta is not None else None
    dc = x.new_empty(G, B, H, C) if need[1] and a is not None else None
    if not (dlam.is_contiguous() and dlam.dtype == dtype):
        raise ValueError("chunk_backward: dlam must be contiguous and of the inputs' dtype")
    args = [_pointer(t) for t in (*ins, dh, dg, dk, dv, dbeta, dc, dlam)]
    _call("chunk_backward", dtype, (G, B * H), C, D, Dv, *args)
    return dk, dv, dbeta, dc, dh, dg


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
    global _threaded, _tuned, _tuning_failure
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
                failure = _compile(cxx, flags, Path(build), out)
                if failure is not None:
                    cmd, stderr = failure
                    errors.append(f"{cmd}: {(stderr.strip().splitlines() or ['failed'])[-1]}")
                    failed.write_text(f"{cmd}\n{stderr}")
                    continue
                os.replace(out, path)  # atomic: another process sees no file or the whole file
        try:
            lib = _load(path)
            _threaded = "-fopenmp" in flags
            tried_native = any("-march=native" in f for f in FLAG_SETS[: FLAG_SETS.index(flags)])
            _tuned = "-march=native" in flags or not tried_native
            _tuning_failure = "" if _tuned else (errors[0] if errors else "")
            return lib
        except OSError as e:  # e.g. built with OpenMP where no OpenMP runtime can be loaded
            errors.append(f"loading {path}: {e}")
    raise RuntimeError("; ".join(errors))


def _compile(cxx: str, flags: tuple[str, ...], build: Path, out: Path) -> tuple[str, str] | None:
    """Compiles the sources in `build` to objects side by side (about 3 s each here: together, one call took 12 s),
    then links them into `out`. Returns None, or the failed command and its stderr."""
    common = [cxx, *flags, "-std=c++17", "-fPIC"]
    jobs = [[*common, "-c", str(build / name), "-o", str(build / f"{name}.o")] for name, _ in SOURCES]
    link = [*common, "-shared", "-o", str(out), *(str(build / f"{name}.o") for name, _ in SOURCES)]

    def run(cmd: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(run, jobs))
    for cmd, done in zip(jobs + [link], results + [None]):
        done = run(cmd) if done is None else done  # the link, once every object compiled
        if done.returncode != 0:
            return " ".join(cmd), done.stderr or f"exit status {done.returncode}"
    return None


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
    for fn in (lib.mesa_chunk_states_f32, lib.mesa_chunk_states_f64):
        # (G, bh, threads, C, D, Dv, k, v, gamma, beta, h0, g0, kb, vb, a, dec, wlast, alast, hs, gs)
        fn.restype = i32
        fn.argtypes = [i32, i64, i32, i32, i32, i32, *[ptr] * 14]
    for fn in (lib.mesa_read_out_f32, lib.mesa_read_out_f64):
        fn.restype = i32
        fn.argtypes = [i64, i32, i32, i32, i32, *[ptr] * 7]  # (N, threads, C, D, Dv, x, k, vb, gs, a, dec, out)
    for fn in (lib.mesa_query_grads_f32, lib.mesa_query_grads_f64):
        fn.restype = i32
        fn.argtypes = [i64, i32, i32, i32, i32, *[ptr] * 8]  # (N, threads, C, D, Dv, do, vb, k, gs, a, dec, pg, r)
    for fn in (lib.mesa_chunk_backward_f32, lib.mesa_chunk_backward_f64):
        # (G, bh, threads, C, D, Dv, x, k, kb, vb, v, beta, a, dec, wlast, alast, hs, gs, do, m, pg, dh, dg, dk, dv,
        # dbeta, dc, dlam)
        fn.restype = i32
        fn.argtypes = [i32, i64, i32, i32, i32, i32, *[ptr] * 22]
    return lib
