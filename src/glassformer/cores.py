"""The CPU cores this process may use: the machine's, shared out between the processes a launcher
(mpiexec) started on it, so that N ranks of data-parallel training never run N threads a core."""
import os

# what launchers put in each process's environment: the processes started in all (Open MPI, MPICH /
# Intel MPI (PMI), MVAPICH), and those on this machine (Open MPI, MPICH's Hydra, MVAPICH)
SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
LOCAL_SIZE_VARS = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE")


def env_count(names, default, environ=None):
    """The first of these environment variables that holds a whole number, else default."""
    environ = os.environ if environ is None else environ
    values = (environ.get(k, "").strip() for k in names)
    return next((int(v) for v in values if v.isdecimal()), default)    # isdigit lets "²" through


def machine_cores():
    """The cores this process may run on (its CPU affinity), else the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def ranks_on_this_machine():
    """The processes a launcher (mpiexec) started on this machine, read from its environment (else
    those it started in all, which share this machine's cores at most); 1 alone."""
    return max(1, env_count(LOCAL_SIZE_VARS + SIZE_VARS, 1))


def share():
    """This process's share of the cores, at least 1: 2 ranks on 8 cores get 4 each. Each rank on every
    core would run 2 threads a core; on 2 cores that made a shakespeare_char step 6x slower."""
    return max(1, machine_cores() // ranks_on_this_machine())


def openblas_function(name):
    """OpenBLAS's openblas_<name> from the copy NumPy loaded (scipy-openblas's 64-bit names first), or
    None where NumPy runs another BLAS or this system has no /proc/self/maps."""
    import ctypes
    try:
        maps = open("/proc/self/maps").read()
    except OSError:
        return None
    for path in sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower()}):
        lib = ctypes.CDLL(path)
        for symbol in (f"scipy_openblas_{name}64_", f"scipy_openblas_{name}", f"openblas_{name}64_",
                       f"openblas_{name}"):
            if hasattr(lib, symbol):
                return getattr(lib, symbol)
    return None


def blas_kernel():
    """The kernels OpenBLAS chose for this CPU ("SkylakeX", "Haswell", ...), or "unknown". Setting
    OPENBLAS_CORETYPE pins them: on an AVX-512 AMD EPYC, Haswell's AVX2 kernels ran a 1-thread sgemm
    at 128 GFLOP/s against 241 for OpenBLAS's own choice, SkylakeX."""
    import ctypes
    get_corename = openblas_function("get_corename")
    if get_corename is None:
        return "unknown"
    get_corename.restype = ctypes.c_char_p
    return get_corename().decode(errors="replace").strip() or "unknown"
