# cython: language_level=3
"""The OpenMP side of fastnn's thread setting (BLAS threads are set by threadpoolctl)."""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int fastnn_has_openmp(void) { return 1; }
    static int fastnn_omp_get_max_threads(void) { return omp_get_max_threads(); }
    static void fastnn_omp_set_num_threads(int n) { omp_set_num_threads(n); }
    #else
    static int fastnn_has_openmp(void) { return 0; }
    static int fastnn_omp_get_max_threads(void) { return 1; }
    static void fastnn_omp_set_num_threads(int n) { (void)n; }
    #endif
    """
    int fastnn_has_openmp() nogil
    int fastnn_omp_get_max_threads() nogil
    void fastnn_omp_set_num_threads(int n) nogil


def has_openmp():
    """True when the compiled core was built with OpenMP."""
    return bool(fastnn_has_openmp())


def omp_get_max_threads():
    """The number of threads an OpenMP region of the core would use."""
    return fastnn_omp_get_max_threads()


def omp_set_num_threads(int n):
    """Set the number of threads for the core's OpenMP regions."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    fastnn_omp_set_num_threads(n)
