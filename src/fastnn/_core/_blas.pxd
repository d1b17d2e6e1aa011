# Row-major GEMM over scipy's BLAS, callable without the GIL.
#
# BLAS is column-major. A row-major matrix is the column-major view of its
# transpose, so C = op(A) op(B) in row-major is C^T = op(B)^T op(A)^T in
# column-major: swap the operands and the dimensions m and n.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* A, int lda,
                      const floating* B, int ldb,
                      floating beta, floating* C, int ldc) noexcept nogil:
    """C (m x n) = alpha * op(A) @ op(B) + beta * C, all row-major.

    lda, ldb and ldc are the row strides (in elements) of A, B and C as stored.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>B, &ldb, <float*>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>B, &ldb, <double*>A, &lda,
              &beta, C, &ldc)


cdef inline void vecmat(int k, int n, const floating* x, const floating* B, int ldb,
                        floating* y) noexcept nogil:
    """y (n) = x (k) @ B (k x n, row-major): one row times a matrix.

    GEMM packs B into a scratch layout on every call, which for a single row
    costs as much as the product itself; GEMV streams B once. (Row-major B is
    column-major B^T, so this is y = B^T x with 'N'.)
    """
    cdef char t = b'N'
    cdef int one = 1
    cdef floating alpha = 1, beta = 0
    if floating is float:
        sgemv(&t, &n, &k, &alpha, <float*>B, &ldb, <float*>x, &one, &beta, y, &one)
    else:
        dgemv(&t, &n, &k, &alpha, <double*>B, &ldb, <double*>x, &one, &beta, y, &one)
