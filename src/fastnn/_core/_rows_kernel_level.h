/* One level's few-rows kernel (see _packed_kernels.c, which includes this file once per
 * level, after that level's nonzero function, with LEVEL_SUFFIX, TGT, VEC, VL, NV_MAX,
 * MASK_T and the intrinsic macros defined, and undefines them after).
 *
 * Y[0:MR, block] = X[0:MR, :] @ W[:, block] + b over the inputs listed in idx, for a block
 * of NV vectors of VL columns; W, b and Y point at the block's first column. Lanes outside
 * the block are masked: mf in the first vector (columns before the first, when the block
 * starts before column 0 to align W's loads), ml in the last. Masked lanes are neither
 * read nor written (nor can they fault). */
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define NAME(f) CAT(f, LEVEL_SUFFIX)

INL TGT void NAME(rows)(const int MR, const int NV, const float *X, ptrdiff_t ldx,
                        const int *idx, int cnt, const float *W, ptrdiff_t ldw, const float *b,
                        float *Y, ptrdiff_t ldy, MASK_T mf, MASK_T ml, int relu)
{
    VEC acc[2][NV_MAX];
    _Pragma("GCC unroll 9")
    for (int r = 0; r < MR; r++) {
        _Pragma("GCC unroll 9")
        for (int v = 0; v < NV; v++)
            acc[r][v] = ZERO();
    }
    for (int t = 0; t < cnt; t++) {
        int k = idx[t];
        const float *w = W + (size_t)k * ldw;
        VEC x[2];
        _Pragma("GCC unroll 9")
        for (int r = 0; r < MR; r++)
            x[r] = BCAST(X + r * ldx + k);
        _Pragma("GCC unroll 9")
        for (int v = 0; v < NV; v++) {
            MASK_T m = MASK_AND(v == 0 ? mf : MASK_ALL, v == NV - 1 ? ml : MASK_ALL);
            VEC wv = v == 0 || v == NV - 1 ? LOADM(m, w + VL * v) : LOADU(w + VL * v);
            if (MR > 1)   /* load once for both rows (gcc would fold a load into each FMA) */
                __asm__("" : VREG(wv));
            _Pragma("GCC unroll 9")
            for (int r = 0; r < MR; r++)
                acc[r][v] = FMA(x[r], wv, acc[r][v]);
        }
    }
    VEC zero = ZERO();
    _Pragma("GCC unroll 9")
    for (int v = 0; v < NV; v++) {
        MASK_T m = MASK_AND(v == 0 ? mf : MASK_ALL, v == NV - 1 ? ml : MASK_ALL);
        VEC bv = b ? LOADM(m, b + VL * v) : zero;
        _Pragma("GCC unroll 9")
        for (int r = 0; r < MR; r++) {
            VEC y = ADD(acc[r][v], bv);
            if (relu)
                y = MAX(zero, y);
            STOREM(m, Y + r * ldy + VL * v, y);
        }
    }
}

#define ROWS_CASE(V)                                                                    \
    case V:                                                                             \
        if (mr == 2)                                                                    \
            NAME(rows)(2, V, Xi, ldx, idx, cnt, W + c0, ldw, bp, Yi, ldy, mf, ml, relu); \
        else                                                                            \
            NAME(rows)(1, V, Xi, ldx, idx, cnt, W + c0, ldw, bp, Yi, ldy, mf, ml, relu); \
        break;

/* Groups of 2 rows times blocks of up to NV_MAX vectors. NumPy puts large arrays 16 bytes
 * past a 64-byte line, so that every load of a 16-float vector would span two lines
 * (measured: 4.4 against 2.6 us for 784 x 128): when all of W's rows share one
 * alignment, the blocks start s columns before column 0 instead, so that each load reads
 * one line (AVX-512) or 32 aligned bytes (AVX2); the last vector of a block takes the
 * columns this moves past the one before. */
static TGT void NAME(rows_forward)(const float *X, ptrdiff_t ldx, const float *W, ptrdiff_t ldw,
                                   const float *b, float *Y, ptrdiff_t ldy, int n, int n_in,
                                   int n_out, int relu, int *idx)
{
    int s = 0;
    if (ldw % VL == 0 && (uintptr_t)W % sizeof(float) == 0)
        s = (int)(((uintptr_t)W / sizeof(float)) % VL);
    for (int i = 0; i < n; i += 2) {
        int mr = n - i < 2 ? n - i : 2;
        const float *Xi = X + i * ldx;
        int cnt = NAME(nonzero)(Xi, ldx, mr, n_in, idx);
        for (int c0 = -s; c0 < n_out; c0 += NV_MAX * VL) {
            int end = n_out - c0 < NV_MAX * VL ? n_out : c0 + NV_MAX * VL;
            int nv = (end - c0 + VL - 1) / VL;
            MASK_T mf = MASK_FROM(c0 < 0 ? -c0 : 0);
            MASK_T ml = MASK_OF(end - c0 - VL * (nv - 1));
            const float *bp = b ? b + c0 : NULL;
            float *Yi = Y + i * ldy + c0;
            switch (nv) {
#if NV_MAX > 6
                ROWS_CASE(9) ROWS_CASE(8) ROWS_CASE(7)
#endif
                ROWS_CASE(6) ROWS_CASE(5) ROWS_CASE(4) ROWS_CASE(3) ROWS_CASE(2)
                ROWS_CASE(1)
            }
        }
    }
}

#undef ROWS_CASE
#undef NAME
#undef CAT
#undef CAT_
#undef LEVEL_SUFFIX
#undef TGT
#undef VEC
#undef VL
#undef NV_MAX
#undef MASK_T
#undef MASK_ALL
#undef MASK_AND
#undef MASK_FROM
#undef MASK_OF
#undef LOADM
#undef LOADU
#undef STOREM
#undef ZERO
#undef BCAST
#undef FMA
#undef ADD
#undef MAX
#undef VREG
