# The packed-weight float32 kernels of the dense layer (see _packed_kernels.h), as
# cdef functions other modules of the core cimport. Nothing here checks shapes.

cdef enum:
    LEVEL_BLAS = 0      # the BLAS path: no packed kernels
    LEVEL_AVX2 = 1
    LEVEL_AVX512 = 2
    PANEL = 32          # columns per packed panel
    # Narrower layers stay on BLAS: the kernels compute a whole vector of columns
    # (16 with AVX-512), so a 784 x 1 layer wastes 15/16 of them. Measured (1 thread,
    # epochs of 784-n_out networks at batch 16 / 64 / 256): n_out = 1 ran 0.53-0.66x
    # BLAS's speed, 4 0.66-0.84x, 8 0.89-1.33x, 10 1.10-1.58x.
    MIN_PACKED_OUTPUTS = 10
    # The packed kernels share the large products of chunks on several threads with a
    # helper thread by default: measured 1.25x at batch 64, even at 16 and 256, on a
    # quiet machine, and it leaves a chunk to the caller once it lost its CPU
    # (benches/NOTES.md 15 and 21).
    DEFAULT_THREADS = 2
    WG_STORE = 0        # what the weight-gradient kernel does with X^T dZ
    WG_SGD = 1
    WG_MOMENTUM = 2

from libc.stdint cimport uint8_t, uint16_t, int32_t

cdef extern from "_packed_kernels.h" nogil:
    # The inputs of a batch that are not 0 in all of its rows (see fnn_batch_inputs).
    int FNN_COMPACT_MAX_INPUTS      # wider batches are not compacted
    ctypedef struct fnn_active:
        int n
        int* cols
        uint16_t* mask

cdef int kernel_level() noexcept nogil
cdef int kernel_threads() noexcept nogil   # 2: the packed kernels may use a helper thread
cdef Py_ssize_t packed_size(int n_in, int n_out) noexcept nogil
cdef void pack(const float* W, float* P, int n_in, int n_out) noexcept nogil
cdef void unpack(const float* P, float* W, int n_in, int n_out) noexcept nogil
cdef void pack_transposed(const float* P, float* PT, int n_in, int n_out,
                          void* team) noexcept nogil
cdef void packed_forward(int level, const float* X, Py_ssize_t ldx, const float* P,
                         const float* b, float* Y, Py_ssize_t ldy, int n, int n_in, int n_out,
                         bint relu, void* act_fn, int act, const fnn_active* inputs,
                         void* team) noexcept nogil
cdef void rows_forward(int level, const float* X, Py_ssize_t ldx, const float* W, Py_ssize_t ldw,
                       const float* b, float* Y, Py_ssize_t ldy, int n, int n_in, int n_out,
                       bint relu) noexcept nogil
cdef void packed_wgrad(int level, const float* X, Py_ssize_t ldx, const float* dZ,
                       Py_ssize_t ldz, float* P, float* G, int n, int n_in, int n_out,
                       int mode, float lr, float mu, float wd, const fnn_active* inputs,
                       void* team) noexcept nogil
# The calling thread and one helper for a chunk (NULL where threads are unavailable).
cdef void* team_start() noexcept nogil
cdef void team_stop(void* team) noexcept nogil
# The uint8 batch gather: shared with the team's helper or, with copies > 0 (the width of
# a packed dense first layer), gathered by both threads, each into its own buffer where
# that layer's products are shared (see fnn_team_input); then the rows of the next batch,
# next[0 .. n_next), are requested into cache.
cdef void gather_u8(int level, const uint8_t* X, Py_ssize_t d, const Py_ssize_t* rows, int nb,
                    float* out, float scale, void* team, int copies,
                    const fnn_active* inputs, const Py_ssize_t* next,
                    int n_next) noexcept nogil
# The inputs of the batch X[rows[0 .. nb)] that are not 0 in all of its rows, into act; with
# them a first dense layer's products skip the rest (inputs in packed_forward/_wgrad and
# gather_u8: the batch is gathered compacted, act.n values a row). Found by the team's
# helper while the caller goes on (at once without one): act is ready after team_wait
# (which any other product or gather of the team's also waits for).
cdef void team_batch_inputs(void* team, int level, const uint8_t* X, Py_ssize_t d,
                            const Py_ssize_t* rows, int nb, fnn_active* act) noexcept nogil
cdef void team_wait(void* team) noexcept nogil
# The fused softmax cross-entropy against integer labels, vectorised (AVX-512, AVX2; see
# _loss_kernels.h): the training loss of float32 classifiers at those levels.
cdef double softmax_xent_labels_simd(int level, const float* Z, const Py_ssize_t* labels,
                                     const float* w, float* dZ, int n, int c) noexcept nogil
# The direct float32 convolution kernels (stride 1; see _conv_kernels.h) and pooling
# kernels (AVX-512; see _pool_kernels.h).
cdef bint conv_direct(int level, const int* g) noexcept nogil
cdef Py_ssize_t conv_scratch_floats(const int* g) noexcept nogil
ctypedef void (*act_fn_t)(int act, float* z, Py_ssize_t n) noexcept nogil
cdef void conv_forward_direct(int level, const float* X, const float* W, const float* b,
                              float* Y, int n, const int* g, act_fn_t act_fn, int act,
                              float* scratch, void* team) noexcept nogil
# A stride-1 convolution and the 2 x 2, stride-2 max-pool after it in one pass (AVX-512;
# see fnn_conv_pool_forward): the pool's outputs and argmax, bit for bit those of the two.
cdef bint conv_pool_fuses(int level, const int* g, const int* pool) noexcept nogil
cdef void conv_pool_forward_direct(int level, const float* X, const float* W, const float* b,
                                   float* Y, int32_t* argmax, int n, const int* g,
                                   const int* pool, act_fn_t act_fn, int act, float* scratch,
                                   void* team) noexcept nogil
# ... and the convolution's weight gradient through that pool: each image's dZ made from
# the pool's gradient in cache (a first layer: nothing else reads its dZ).
cdef Py_ssize_t conv_pool_wgrad_scratch_floats(const int* g) noexcept nogil
cdef void conv_pool_wgrad_direct(int level, const float* X, const float* dY,
                                 const int32_t* argmax, const float* Y, int act, float* dW,
                                 float* db, int n, const int* g, const int* pool,
                                 float* scratch, void* team) noexcept nogil
cdef void conv_wgrad_direct(int level, const float* X, const float* dZ, float* dW, float* db,
                            int n, const int* g, float* scratch, void* team) noexcept nogil
cdef bint pool_direct(int level) noexcept nogil
cdef bint pool_tiles(const int* g) noexcept nogil
cdef void pool_forward_direct(const float* X, float* Y, int32_t* argmax, int n,
                              const int* g, act_fn_t act_fn, int act, void* team) noexcept nogil
cdef void pool_backward_act_direct(const float* dY, const int32_t* argmax, const float* Y,
                                   float* dZ, int act, int n, const int* g, void* team) noexcept nogil
