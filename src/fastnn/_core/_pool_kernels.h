/* Max-pooling kernels over channel vectors (float32, AVX-512F), for the training loop.
 *
 * The core's Cython pooling (_kernels.pyx) runs 8 channels at a time with AVX2 and
 * needs two overlapping groups for the tutorial's 10 channels; its fused backward
 * zeroes all of dZ, then scatters the gradients one value at a time. Here a masked
 * vector holds all of a pixel's channels (up to 16 per group), and the backward of
 * a pool whose windows tile the input (stride = window) writes each window once:
 * the gradient at its maximum, zeros elsewhere.
 *
 * g is the core's maxpool2d geometry: [H, W, C, OH, OW, PH, PW, SH, SW]. Nothing here
 * checks it: the Cython callers do (check_pool_geometry), and call these only where
 * fnn_pool_direct says they apply.
 */
#ifndef FASTNN_POOL_KERNELS_H
#define FASTNN_POOL_KERNELS_H

#include <stdint.h>

#include "_packed_kernels.h"   /* fnn_team */

/* Activation codes, as in fastnn/_codes.py (the caller checks they agree). */
#define FNN_ACT_IDENTITY 0
#define FNN_ACT_SIGMOID 1
#define FNN_ACT_TANH 2
#define FNN_ACT_RELU 3

/* 1 when the kernels below run this pool at this level (AVX-512), else 0. The
 * backward also needs windows that tile the input (fnn_pool_tiles). */
int fnn_pool_direct(int level);
int fnn_pool_tiles(const int *g);

/* Y = the maximum of each window; argmax = its offset within the image (the first
 * maximum in row-major window order, NaN never replacing a value: as _kernels.pyx);
 * then act_fn(act, ...) on each image's Y unless act_fn is NULL (a monotonic
 * activation of the layer before, moved after the pool). Images are shared with the
 * team's helper (NULL: none). */
void fnn_pool_forward(const float *X, float *Y, int32_t *argmax, int n, const int *g,
                      fnn_act_fn act_fn, int act, fnn_team *team);

/* dZ (n x H*W*C) = at each window's maximum dY * act'(y), y the window's maximum (the
 * pool's output Y), zeros elsewhere, for windows that tile the input. (The bias
 * gradient of the convolution before comes from its weight-gradient kernel.) */
void fnn_pool_backward_act(const float *dY, const int32_t *argmax, const float *Y, float *dZ,
                           int act, int n, const int *g, fnn_team *team);

/* The same for one image (dY, argmax and Y at its first output, dZ at its first input),
 * on the calling thread. */
void fnn_pool_backward_act_image(const float *dY, const int32_t *argmax, const float *Y,
                                 float *dZ, int act, const int *g);

#endif
