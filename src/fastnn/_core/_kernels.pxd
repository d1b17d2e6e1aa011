# Pointer-level kernels shared by the op wrappers (_kernels.pyx) and the
# whole-epoch training loop (_train.pyx). None of them checks anything: the
# callers check shapes, dtypes and label ranges while they still hold the GIL.
from cython cimport floating
from libc.stdint cimport uint8_t, uint64_t, int32_t

# The activation, loss, output, layer and optimizer codes (IDENTITY, RELU, MSE,
# LAYER_DENSE, OPT_ADAM, ...), generated from fastnn/_codes.py by setup.py.
include "_codes.pxi"

cdef void activate(int act, floating* z, Py_ssize_t n) noexcept nogil
cdef void backprop_activation(int act, const floating* y, floating* dz, Py_ssize_t n) noexcept nogil

cdef void dense_forward_ptr(const floating* X, const floating* W, const floating* b,
                            floating* Y, int n, int n_in, int n_out, int act) noexcept nogil
cdef void output_grad(int act, const floating* Y, floating* dZ, floating* db,
                      int n, int n_out) noexcept nogil
cdef void dense_backward_ptr(const floating* X, const floating* W, const floating* Y,
                             floating* dZ, floating* dW, floating* db, floating* dX,
                             int n, int n_in, int n_out, int act) noexcept nogil

cdef void softmax_rows(const floating* Z, floating* P, int n, int c) noexcept nogil
# Losses: the mean loss, with the gradient written to dZ unless it is NULL.
# w (NULL for none) weights each sample's loss; the mean still divides by n.
cdef double softmax_xent_labels(const floating* Z, const Py_ssize_t* labels,
                                const floating* w, floating* dZ, int n, int c) noexcept nogil
cdef double softmax_xent_targets(const floating* Z, const floating* T,
                                 const floating* w, floating* dZ, int n, int c) noexcept nogil
cdef double sigmoid_bce(const floating* Z, const floating* T,
                        const floating* w, floating* dZ, int n, int c) noexcept nogil
cdef double mse_loss(const floating* P, const floating* T,
                     const floating* w, floating* dP, int n, int c) noexcept nogil
cdef double poisson_loss(const floating* Z, const floating* T,
                         const floating* w, floating* dZ, int n, int c) noexcept nogil
cdef void exp_inplace(floating* z, Py_ssize_t n) noexcept nogil

cdef void sgd_step(floating* p, const floating* g, floating* v, Py_ssize_t n,
                   double lr, double momentum, bint nesterov, double weight_decay) noexcept nogil
cdef void adam_step(floating* p, const floating* g, floating* m, floating* v, Py_ssize_t n,
                    double lr, double beta1, double beta2, double eps,
                    double weight_decay, long step) noexcept nogil

# Images (channels-last). ``g`` is the layer's geometry, as Layer.core_geometry gives it:
# conv2d [H, W, C, OH, OW, CO, KH, KW, SH, SW, PT, PL], maxpool2d [H, W, C, OH, OW, PH, PW, SH, SW].
cdef int check_conv_geometry(const int* g, int length) except -1
cdef int check_pool_geometry(const int* g, int length) except -1
cdef void im2col_ptr(const floating* X, floating* cols, int n, Py_ssize_t ld,
                     const int* g) noexcept nogil
cdef void col2im_ptr(const floating* cols, floating* dX, int n, Py_ssize_t ld,
                     const int* g) noexcept nogil
cdef void conv_forward_ptr(const floating* X, const floating* W, const floating* b, floating* Y,
                           floating* cols, int n, int blk, bint keep, const int* g,
                           int act) noexcept nogil
cdef void conv_backward_ptr(const floating* W, floating* dZ, floating* cols, floating* dW,
                            floating* db, floating* dX, int n, int blk,
                            const int* g) noexcept nogil
cdef void maxpool_forward_ptr(const floating* X, floating* Y, int32_t* argmax, int n,
                              const int* g) noexcept nogil
cdef void maxpool_backward_ptr(const floating* dY, const int32_t* argmax, floating* dX, int n,
                               const int* g) noexcept nogil
cdef void maxpool_backward_act_ptr(const floating* dY, const int32_t* argmax, floating* dZ,
                                   const floating* A, floating* db, int act, int n,
                                   const int* g) noexcept nogil
cdef void dropout_forward_ptr(const floating* X, floating* Y, uint8_t* mask, Py_ssize_t size,
                              uint64_t key, uint64_t counter, int index, int t) noexcept nogil
cdef void dropout_backward_ptr(const floating* dY, const uint8_t* mask, floating* dX,
                               Py_ssize_t size, int t) noexcept nogil
