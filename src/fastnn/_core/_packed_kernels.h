/* Packed-weight float32 kernels for the dense layer (AVX-512F and AVX2+FMA).
 *
 * Layout: a weight matrix W (n_in x n_out, row-major) is kept as column panels of
 * FNN_NR = 32 columns. Panel p holds columns [32 p, 32 p + 32) as an n_in x 32
 * row-major block (row k of the panel is W[k, 32 p : 32 p + 32]), the panels one
 * after the other; the columns past n_out in the last panel are zeros and stay
 * zeros under every update below. A panel is therefore contiguous along k, which
 * is the order in which both the forward and the weight-gradient kernels read it.
 *
 * Every function is compiled for every level; the level argument picks the code:
 * FNN_LEVEL_AVX512 or FNN_LEVEL_AVX2. The caller checks that the machine supports
 * it (fnn_cpu_level). Nothing here checks shapes: the Cython callers do.
 */
#ifndef FASTNN_PACKED_KERNELS_H
#define FASTNN_PACKED_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define FNN_NR 32

/* The calling thread and one helper, for one chunk of batches (see _packed_kernels.c). */
typedef struct fnn_team fnn_team;
fnn_team *fnn_team_start(void);      /* NULL when threads are not available */
void fnn_team_stop(fnn_team *team);  /* NULL is fine */

/* fn(ctx, u) for u = 0 .. units - 1, shared by the calling thread and the team's helper
 * (each unit claimed by one of them), or all by the caller when team is NULL; returns
 * when every unit is done. Units must not depend on which thread runs them. */
typedef void (*fnn_unit_fn)(void *ctx, int unit);

/* An activation applied in place to n values (the core's), or NULL for none: how the
 * image kernels apply a layer's activation inside their units. */
typedef void (*fnn_act_fn)(int act, float *z, ptrdiff_t n);
void fnn_team_for(fnn_team *team, int units, fnn_unit_fn fn, void *ctx);

#define FNN_LEVEL_BLAS 0
#define FNN_LEVEL_AVX2 1
#define FNN_LEVEL_AVX512 2

/* What the weight-gradient kernel does with acc = X^T dZ (one value per weight). */
#define FNN_WG_STORE 0      /* G = acc */
#define FNN_WG_SGD 1        /* W = W (1 - lr wd) - lr acc */
#define FNN_WG_MOMENTUM 2   /* V = mu V + acc + wd W; W -= lr V */
#define FNN_WG_SGD_NO_DECAY 3   /* W -= lr acc (FNN_WG_SGD with wd = 0, chosen inside) */

/* The best level this build and this machine both support. */
int fnn_cpu_level(void);

/* Floats of the packed form of an n_in x n_out matrix. */
size_t fnn_packed_size(int n_in, int n_out);

/* W (row-major, n_in x n_out) -> P (panels, zero padding), and back. */
void fnn_pack(const float *W, float *P, int n_in, int n_out);
void fnn_unpack(const float *P, float *W, int n_in, int n_out);

/* PT = the packed form of W^T (n_out x n_in), from W packed in P. With it the input
 * gradient dZ @ W^T is a forward product (fnn_dense_forward, b = NULL). Its panels are
 * shared with the team's helper (NULL: none). */
void fnn_pack_transposed(const float *P, float *PT, int n_in, int n_out, fnn_team *team);

/* The inputs of a batch that are not 0 in all of its rows (an image's background is 0
 * in every image of a batch: a batch of 64 MNIST images has 37% of its 784 pixels 0 in
 * all 64). A first dense layer's products skip the others: their terms add exact zeros.
 * The batch is then gathered compacted, its row i holding X[rows[i], cols[0 .. n)]. */
#define FNN_COMPACT_MAX_INPUTS 16384   /* wider batches are not compacted */
typedef struct {
    int n;              /* how many */
    int *cols;          /* which, in increasing order (room for d + 16) */
    uint16_t *mask;     /* bit c of mask[g] set: input 16 g + c is one ((d + 15) / 16 of them) */
} fnn_active;

/* act->n, act->cols and act->mask for the batch X[rows[0 .. nb)] (d uint8 inputs each);
 * returns act->n. */
int fnn_batch_inputs(int level, const uint8_t *X, ptrdiff_t d, const ptrdiff_t *rows, int nb,
                     fnn_active *act);

/* fnn_batch_inputs on the team's helper, while the caller goes on with other work (the
 * next batch's inputs, during the serial part of this batch's step); at once on the
 * caller without a team or with one given up. act is ready after fnn_team_wait, which
 * any other job of the team's also waits for first. */
void fnn_team_batch_inputs(fnn_team *team, int level, const uint8_t *X, ptrdiff_t d,
                           const ptrdiff_t *rows, int nb, fnn_active *act);
void fnn_team_wait(fnn_team *team);   /* NULL is fine */

/* Ask for the rows X[rows[0 .. nb)] (d bytes each) to be brought into cache, and return:
 * the next batch's, requested while this one is computed. */
void fnn_prefetch_rows(const uint8_t *X, ptrdiff_t d, const ptrdiff_t *rows, int nb);

/* Y (n x n_out, row stride ldy) = X (n x n_in, row stride ldx) @ W + b (b may be NULL), then ReLU
 * when relu is nonzero, or act_fn(act, ...) on each row's outputs when act_fn is not NULL
 * (an elementwise activation: applied where the outputs were just computed, by the thread
 * that computed them). With a team (not NULL) a large product is shared with its helper;
 * the result does not depend on it (each output is computed by the same code). */
void fnn_dense_forward(int level, const float *X, ptrdiff_t ldx, const float *P,
                       const float *b, float *Y, ptrdiff_t ldy, int n, int n_in, int n_out,
                       int relu, fnn_act_fn act_fn, int act, const fnn_active *in,
                       fnn_team *team);

/* acc = X^T dZ over n rows (X: n x n_in, stride ldx; dZ: n x n_out, stride ldz),
 * applied to the packed W (and G, the gradient or the velocity, packed) as mode says.
 *
 * With `in` (not NULL; both functions) X is a compacted batch: its in->n columns are the
 * inputs in->cols of W's n_in rows, the others being 0 in every row. Each output is then
 * the same sum as without (the same terms in the same order, less terms that add +0 or
 * -0 to it; an infinite or NaN weight or gradient facing a skipped input does not make
 * it NaN), and the rows of W for skipped inputs get the update of a zero gradient. */
void fnn_dense_wgrad(int level, const float *X, ptrdiff_t ldx, const float *dZ, ptrdiff_t ldz,
                     float *P, float *G, int n, int n_in, int n_out, int mode,
                     float lr, float mu, float wd, const fnn_active *in, fnn_team *team);

/* Y (n x n_out, row stride ldy) = X (n x n_in, row stride ldx) @ W + b (b may be NULL), then
 * ReLU when relu is nonzero, for W in its ordinary row-major layout (row stride ldw): the
 * product of inference on a few rows, which reads W once per group of rows (2 with AVX-512
 * and AVX2) and needs no packed copy. Terms whose input is 0 in every row of a group are
 * skipped (as the reference BLAS's GEMV does): W's rows for them are not read at all, and
 * images are mostly zeros. Each output is the sum over k in increasing order from 0, with
 * the bias added last, as in fnn_dense_forward, so both give the same bits. (The one
 * difference from a dense product: a skipped input meeting an infinite or NaN weight
 * does not make the output NaN.) */
void fnn_rows_forward(int level, const float *X, ptrdiff_t ldx, const float *W, ptrdiff_t ldw,
                      const float *b, float *Y, ptrdiff_t ldy, int n, int n_in, int n_out,
                      int relu);

/* out[i, :] = X[rows[i], :] * scale for nb rows of d uint8 features (the batch gather),
 * shared with the team's helper (if any) for large batches. With `in` (not NULL; also
 * in fnn_team_input) only its inputs: out[i, q] = X[rows[i], in->cols[q]] * scale, rows
 * in->n apart. */
void fnn_gather_u8(int level, const uint8_t *X, ptrdiff_t d, const ptrdiff_t *rows, int nb,
                   float *out, float scale, const fnn_active *in, fnn_team *team);

/* The batch gather of a network whose first layer is dense (n_out wide): out by the
 * calling thread and, at the same time, a copy by the team's helper (if any), which its
 * units of the dense products on out then read. Where those products are shared, both
 * gather as the forward product on out starts (fnn_dense_forward), in its job: the call
 * here only records the gather. Both cores read all of the batch in
 * those products (each has its panels of W): reading lines the other core wrote cost
 * more than gathering twice (NOTES 23). Where those products are not shared, this is
 * fnn_gather_u8. Then each of them requests the next batch's rows, next[0 .. n_next),
 * into its cache (fnn_prefetch_rows). */
void fnn_team_input(fnn_team *team, int level, const uint8_t *X, ptrdiff_t d,
                    const ptrdiff_t *rows, int nb, float *out, float scale,
                    const fnn_active *in, int n_out, const ptrdiff_t *next, int n_next);

#endif
