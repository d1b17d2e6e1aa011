/* The fused softmax cross-entropy of training, vectorised (AVX-512F and AVX2+FMA).
 *
 * The core's loss (``softmax_xent_labels`` in _kernels.pyx) takes one libm expf per
 * logit: 47 ns per row of MNIST's 10 classes, 3 us of each batch of 64 (NOTES 25). This
 * one computes a row's exponentials in vectors, with the same formula otherwise.
 */
#ifndef FASTNN_LOSS_KERNELS_H
#define FASTNN_LOSS_KERNELS_H

#include <stddef.h>

/* Mean over n rows of w_i (logsumexp(z_i) - z_i[labels[i]]) for logits Z (n x c,
 * row-major; w NULL: all 1), and, unless dZ is NULL, dZ = w_i (softmax(z_i) - onehot) / n.
 * level: FNN_LEVEL_AVX512 or FNN_LEVEL_AVX2 (the caller checks the CPU), labels in
 * [0, c) (checked by the caller). A row with an infinite or NaN logit gives a NaN loss. */
double fnn_softmax_xent_labels(int level, const float *Z, const ptrdiff_t *labels,
                               const float *w, float *dZ, int n, int c);

#endif
