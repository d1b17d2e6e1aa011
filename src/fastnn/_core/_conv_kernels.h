/* Direct float32 convolution kernels (stride 1, channels-last), AVX-512F and AVX2+FMA.
 *
 * The im2col + GEMM route (the core's _kernels.pyx) materialises 25 copies of every
 * input pixel for a 5x5 kernel and hands OpenBLAS products 10 columns wide. These
 * kernels read each image from one zero-padded plane per input channel instead, and
 * broadcast each input value against a vector of output channels (see _conv_kernels.c).
 *
 * g is the core's conv2d geometry: [H, W, C, OH, OW, CO, KH, KW, SH, SW, PT, PL].
 * Nothing here checks it: the Cython callers do (check_conv_geometry), and call these
 * only where fnn_conv_direct says they apply, with the scratch fnn_conv_scratch_floats
 * asks for.
 */
#ifndef FASTNN_CONV_KERNELS_H
#define FASTNN_CONV_KERNELS_H

#include <stddef.h>

#include "_packed_kernels.h"   /* fnn_team */

/* The images of a call are cut into at most this many units, always the same way for
 * the same count of images; a team's two threads share them, and the weight gradient
 * sums the units' partial sums in their order, so results do not depend on threads. */
#define FNN_CONV_UNITS 8

/* 1 when the direct kernels compute this convolution at this level (AVX2 or AVX-512,
 * stride 1), else 0: the caller keeps im2col + GEMM. */
int fnn_conv_direct(int level, const int *g);

/* Floats of scratch the kernels take: per unit, one image's padded planes and a
 * partial weight and bias gradient. */
size_t fnn_conv_scratch_floats(const int *g);

/* Y (n x OH*OW*CO, channels-last) = act(conv(X) + b), act_fn(act, ...) applied to each
 * image's outputs unless act_fn is NULL; X is n x H*W*C, W is KH x KW x C x CO. */
void fnn_conv_forward(int level, const float *X, const float *W, const float *b, float *Y,
                      int n, const int *g, fnn_act_fn act_fn, int act, float *scratch,
                      fnn_team *team);

/* Whether fnn_conv_pool_forward takes this convolution (geometry g) and the max-pool
 * after it (pool: H, W, C, OH, OW, PH, PW, SH, SW): stride 1, AVX-512, and a 2 x 2
 * pool of stride 2 over the convolution's output. */
int fnn_conv_pool_fuses(int level, const int *g, const int *pool);

/* Y (n x POH*POW*CO) and argmax (the same shape; offsets into each image's convolution
 * output) = the max-pool of the convolution's output, as fnn_conv_forward then
 * fnn_pool_forward give them, bit for bit, with the convolution's output never stored;
 * act_fn(act, ...) applied to each image's pooled outputs unless act_fn is NULL. Does
 * nothing unless fnn_conv_pool_fuses. */
void fnn_conv_pool_forward(int level, const float *X, const float *W, const float *b,
                           float *Y, int32_t *argmax, int n, const int *g, const int *pool,
                           fnn_act_fn act_fn, int act, float *scratch, fnn_team *team);

/* The scratch fnn_conv_pool_wgrad needs (more than fnn_conv_scratch_floats). */
size_t fnn_conv_pool_wgrad_scratch_floats(const int *g);

/* fnn_conv_wgrad with dZ made per image from the max-pool after the convolution (its
 * gradient dY, argmax and activated output Y, and act, as fnn_pool_backward_act takes
 * them; windows that tile the input) while the image is in cache, and never stored: the
 * same values as fnn_pool_backward_act then fnn_conv_wgrad, for a first layer (whose dZ
 * nothing else reads). */
void fnn_conv_pool_wgrad(int level, const float *X, const float *dY, const int32_t *argmax,
                         const float *Y, int act, float *dW, float *db, int n, const int *g,
                         const int *pool, float *scratch, fnn_team *team);

/* dW (KH x KW x C x CO) = the sum over the n images of X's windows times dZ
 * (n x OH*OW*CO, dL/d(pre-activation)), and db (CO) = the sum of dZ's rows; both
 * overwritten. */
void fnn_conv_wgrad(int level, const float *X, const float *dZ, float *dW, float *db, int n,
                    const int *g, float *scratch, fnn_team *team);

#endif
