# cython: language_level=3
"""Build-time OpenMP facts, exposed to Python (as scikit-learn's _openmp_helpers)."""

from fastrnn.kernels.common cimport FASTRNN_OPENMP, omp_get_max_threads


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(FASTRNN_OPENMP)


def openmp_max_threads():
    """omp_get_max_threads(): honours OMP_NUM_THREADS and threadpoolctl's limits."""
    return omp_get_max_threads()


cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #endif
    /* Nanoseconds a cache line takes to go from one thread of a team of two to the
       other and back: thread 0 writes 2i + 1 and waits for 2i + 2, thread 1 the
       other way round, ``rounds`` times, after one handshake that has both running.
       -1 where no team of two forms (a build without OpenMP, a thread limit of 1) or
       where the process has one processor (two threads spinning in turns on it would
       take a scheduler time slice a trip). */
    static double fastrnn_round_trip_ns(int rounds) {
        double ns = -1.0;
    #ifdef _OPENMP
        if (omp_get_num_procs() < 2)
            return ns;
        struct { int value; char pad[60]; } flag __attribute__((aligned(64)));
        flag.value = 0;
        #pragma omp parallel num_threads(2) shared(flag, ns)
        {
            if (omp_get_num_threads() == 2) {
                int tid = omp_get_thread_num();
                #pragma omp barrier
                double start = omp_get_wtime();
                for (int i = 0; i < rounds; i++) {
                    if (tid == 0) {
                        __atomic_store_n(&flag.value, 2 * i + 1, __ATOMIC_RELEASE);
                        while (__atomic_load_n(&flag.value, __ATOMIC_ACQUIRE) != 2 * i + 2) {}
                    } else {
                        while (__atomic_load_n(&flag.value, __ATOMIC_ACQUIRE) != 2 * i + 1) {}
                        __atomic_store_n(&flag.value, 2 * i + 2, __ATOMIC_RELEASE);
                    }
                }
                if (tid == 0)
                    ns = (omp_get_wtime() - start) * 1e9 / rounds;
            }
        }
    #else
        (void)rounds;
    #endif
        return ns;
    }

    /* Seconds of ``iters`` rounds of 8 independent vector FMA chains on this thread:
       a core's FMA units kept busy, nothing read from memory. */
    typedef float fastrnn_probe_vec __attribute__((vector_size(32)));
    static double fastrnn_fma_seconds(long iters) {
    #ifdef _OPENMP
        fastrnn_probe_vec acc[8], step;
        for (int v = 0; v < 8; v++)
            for (int e = 0; e < 8; e++)
                acc[v][e] = 1.0f + 0.001f * v;
        for (int e = 0; e < 8; e++)
            step[e] = 0.999999f;
        double start = omp_get_wtime();
        for (long i = 0; i < iters; i++)
            for (int v = 0; v < 8; v++)
                acc[v] = acc[v] * step + step;
        double seconds = omp_get_wtime() - start;
        volatile float sink = 0.0f;
        for (int v = 0; v < 8; v++)
            sink += acc[v][0];
        (void)sink;
        return seconds;
    #else
        (void)iters;
        return 0.0;
    #endif
    }

    /* One thread's FMA time alone over the slower of two running at once: about 1
       where each has a core of its own, about 0.5 where the two share one core's FMA
       units (SMT siblings, or one core time-sliced); -1 as fastrnn_round_trip_ns. */
    static double fastrnn_team_fma_share(long iters) {
        double share = -1.0;
    #ifdef _OPENMP
        if (omp_get_num_procs() < 2)
            return share;
        double alone = fastrnn_fma_seconds(iters);
        double both[2] = {0.0, 0.0};
        int team = 0;
        #pragma omp parallel num_threads(2) shared(both, team)
        {
            if (omp_get_num_threads() == 2) {
                #pragma omp barrier
                both[omp_get_thread_num()] = fastrnn_fma_seconds(iters);
                #pragma omp single
                team = 1;
            }
        }
        if (team)
            share = alone / (both[0] > both[1] ? both[0] : both[1]);
    #else
        (void)iters;
    #endif
        return share;
    }
    """
    double fastrnn_round_trip_ns(int rounds) noexcept nogil
    double fastrnn_team_fma_share(long iters) noexcept nogil


def core_round_trip_ns(int rounds=20000):
    """Nanoseconds for a cache line to go from one OpenMP thread to another and back
    (the cost under every barrier of a kernel's team), or None where no team of two
    threads forms on two processors.  On a shared host it moves with where the host
    puts the two threads: 74-100 ns and 348-420 ns on the same 2-vCPU machine, seconds
    to minutes apart (README, "How the cost grows")."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    cdef double ns
    with nogil:
        ns = fastrnn_round_trip_ns(rounds)
    return None if ns < 0 else ns


def team_compute_share(long iters=100000):
    """How much of a core each of two OpenMP threads gets when both compute at once:
    one thread's time for a run of vector FMAs alone over the slower thread's when
    two run it together.  About 1 where the two have cores of their own, about 0.5
    where they share one (a host that places two vCPUs on one core's SMT siblings);
    None where no team of two forms on two processors."""
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    cdef double share
    with nogil:
        share = fastrnn_team_fma_share(iters)
    return None if share < 0 else share
