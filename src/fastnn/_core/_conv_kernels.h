/* Direct float32 convolution kernels (stride 1, channels-last), AVX-512F and AVX2+FMA.
 *
 * The im2col + GEMM route (the core's _kernels.pyx) materialises 25 copies of every
 * input pixel for a 5x5 kernel and hands OpenBLAS products 10 columns wide. These
 * kernels read each image from one zero-padded plane per input channel instead, and
 * broadcast each input value against a vector of output channels (see _conv_kernels.c).
 *
 * g is the core's conv2d geometry: [H, W, C, OH, OW, CO, KH, KW, SH, SW, PT, PL].
 * Nothing here checks it: the Cython callers do (check_conv_geometry), and call these
 * only where fnn_conv_direct says they apply, with the scratch fnn_conv_image_floats
 * asks for.
 */
#ifndef FASTNN_CONV_KERNELS_H
#define FASTNN_CONV_KERNELS_H

#include <stddef.h>

/* 1 when the direct kernels compute this convolution at this level (AVX2 or AVX-512,
 * stride 1), else 0: the caller keeps im2col + GEMM. */
int fnn_conv_direct(int level, const int *g);

/* Floats of scratch the kernels take: one image's padded planes. */
size_t fnn_conv_image_floats(const int *g);

/* Y (n x OH*OW*CO, channels-last) = conv(X) + b; X is n x H*W*C, W is KH x KW x C x CO.
 * scratch: at least fnn_conv_image_floats(g) floats. */
void fnn_conv_forward(int level, const float *X, const float *W, const float *b, float *Y,
                      int n, const int *g, float *scratch);

/* dW (KH x KW x C x CO) = the sum over the n images of X's windows times dZ
 * (n x OH*OW*CO, dL/d(pre-activation)), overwritten. scratch: at least
 * fnn_conv_image_floats(g) floats. */
void fnn_conv_wgrad(int level, const float *X, const float *dZ, float *dW, int n,
                    const int *g, float *scratch);

#endif
