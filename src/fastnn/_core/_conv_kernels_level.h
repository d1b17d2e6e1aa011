/* One level's direct convolution kernels (see _conv_kernels.c, which includes this
 * file once per level with LEVEL_SUFFIX, TGT, VEC, VL, MR_MAX, TB_MAX and the
 * intrinsic macros defined, and undefines them after). */
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define NAME(f) CAT(f, LEVEL_SUFFIX)

/* MR output pixels of one row, channels of one vector group (mask m): y = bias + the
 * sum over taps of the weight vector times the pixel's input value. x points at plane
 * 0 under the first pixel's window, w at W's first tap for the group's first channel. */
INL TGT void NAME(fwd_pixels)(const int MR, const float *x, const geom *q, const float *w,
                              MASK_T m, VEC bias, float *y)
{
    VEC acc[MR_MAX];
    _Pragma("GCC unroll 24")
    for (int k = 0; k < MR; k++)
        acc[k] = bias;
    for (int i = 0; i < q->KH; i++)
        for (int j = 0; j < q->KW; j++)
            for (int ci = 0; ci < q->C; ci++, w += q->CO) {
                VEC wv = LOADM(m, w);
                const float *xr = x + ci * q->ps + (ptrdiff_t)i * q->Wp + j;
                _Pragma("GCC unroll 24")
                for (int k = 0; k < MR; k++)
                    acc[k] = FMA(BCAST(xr + k), wv, acc[k]);
            }
    _Pragma("GCC unroll 24")
    for (int k = 0; k < MR; k++)
        STOREM(m, y + (ptrdiff_t)k * q->CO, acc[k]);
}

#define FWD_CASE(N) case N: NAME(fwd_pixels)(N, x, q, W + c0, m, bias, yo); break;

static TGT void NAME(forward_image)(const geom *q, const float *planes, const float *W,
                                    const float *b, float *y)
{
    int rblocks = (q->OW + MR_MAX - 1) / MR_MAX;
    for (int c0 = 0; c0 < q->CO; c0 += VL) {
        MASK_T m = MASK_OF(q->CO - c0);
        VEC bias = LOADM(m, b + c0);
        for (int oh = 0; oh < q->OH; oh++)
            for (int kb = 0; kb < rblocks; kb++) {
                int ow0, mr;
                split(q->OW, rblocks, kb, &ow0, &mr);
                const float *x = planes + (ptrdiff_t)oh * q->Wp + ow0;
                float *yo = y + ((ptrdiff_t)oh * q->OW + ow0) * q->CO + c0;
                switch (mr) {
                    FWD_CASE(1) FWD_CASE(2) FWD_CASE(3) FWD_CASE(4) FWD_CASE(5) FWD_CASE(6)
                    FWD_CASE(7) FWD_CASE(8) FWD_CASE(9) FWD_CASE(10) FWD_CASE(11)
                    FWD_CASE(12)
#if MR_MAX > 12
                    FWD_CASE(13) FWD_CASE(14) FWD_CASE(15) FWD_CASE(16) FWD_CASE(17)
                    FWD_CASE(18) FWD_CASE(19) FWD_CASE(20) FWD_CASE(21) FWD_CASE(22)
                    FWD_CASE(23) FWD_CASE(24)
#endif
                }
            }
    }
}

/* dW rows of TB taps (at their offsets off into the planes), channels of one vector
 * group (mask m; dz and dW at its first channel) += the sum over the image's pixels of
 * the tap's input value times the pixel's dZ vector. */
INL TGT void NAME(wg_taps)(const int TB, const float *planes, const geom *q,
                           const ptrdiff_t *off, const float *dz, MASK_T m, float *dW)
{
    VEC a0[TB_MAX], a1[TB_MAX];
    const float *xt[TB_MAX];
    _Pragma("GCC unroll 24")
    for (int t = 0; t < TB; t++) {
        a0[t] = ZERO();
        a1[t] = ZERO();
        xt[t] = planes + off[t];
    }
    for (int oh = 0; oh < q->OH; oh++) {
        const float *d = dz + (ptrdiff_t)oh * q->OW * q->CO;
        ptrdiff_t f = (ptrdiff_t)oh * q->Wp;
        int ow = 0;
        for (; ow + 1 < q->OW; ow += 2) {
            VEC d0 = LOADM(m, d + (ptrdiff_t)ow * q->CO);
            VEC d1 = LOADM(m, d + (ptrdiff_t)(ow + 1) * q->CO);
            _Pragma("GCC unroll 24")
            for (int t = 0; t < TB; t++) {
                a0[t] = FMA(BCAST(xt[t] + f + ow), d0, a0[t]);
                a1[t] = FMA(BCAST(xt[t] + f + ow + 1), d1, a1[t]);
            }
        }
        if (ow < q->OW) {
            VEC d0 = LOADM(m, d + (ptrdiff_t)ow * q->CO);
            _Pragma("GCC unroll 24")
            for (int t = 0; t < TB; t++)
                a0[t] = FMA(BCAST(xt[t] + f + ow), d0, a0[t]);
        }
    }
    _Pragma("GCC unroll 24")
    for (int t = 0; t < TB; t++) {
        float *r = dW + (ptrdiff_t)t * q->CO;
        STOREM(m, r, ADD(LOADM(m, r), ADD(a0[t], a1[t])));
    }
}

#define WG_CASE(N) case N: NAME(wg_taps)(N, planes, q, off, dz + c0, m, dWb); break;

static TGT void NAME(wgrad_image)(const geom *q, const float *planes, const float *dz,
                                  float *dW)
{
    int T = q->KH * q->KW * q->C, tblocks = (T + TB_MAX - 1) / TB_MAX;
    ptrdiff_t off[TB_MAX];
    for (int c0 = 0; c0 < q->CO; c0 += VL) {
        MASK_T m = MASK_OF(q->CO - c0);
        for (int kt = 0; kt < tblocks; kt++) {
            int t0, tb;
            split(T, tblocks, kt, &t0, &tb);
            tap_offsets(q, t0, tb, off);
            float *dWb = dW + (ptrdiff_t)t0 * q->CO + c0;
            switch (tb) {
                WG_CASE(1) WG_CASE(2) WG_CASE(3) WG_CASE(4) WG_CASE(5) WG_CASE(6)
#if TB_MAX > 6
                WG_CASE(7) WG_CASE(8)
#endif
            }
        }
    }
}

/* db (CO) += the sum of one image's dZ rows (OH*OW of them). */
static TGT void NAME(bias_grad_image)(const geom *q, const float *dz, float *db)
{
    ptrdiff_t pixels = (ptrdiff_t)q->OH * q->OW;
    for (int c0 = 0; c0 < q->CO; c0 += VL) {
        MASK_T m = MASK_OF(q->CO - c0);
        VEC s0 = ZERO(), s1 = ZERO();
        ptrdiff_t p = 0;
        for (; p + 1 < pixels; p += 2) {
            s0 = ADD(s0, LOADM(m, dz + p * q->CO + c0));
            s1 = ADD(s1, LOADM(m, dz + (p + 1) * q->CO + c0));
        }
        if (p < pixels)
            s0 = ADD(s0, LOADM(m, dz + p * q->CO + c0));
        STOREM(m, db + c0, ADD(LOADM(m, db + c0), ADD(s0, s1)));
    }
}

#undef FWD_CASE
#undef WG_CASE
#undef NAME
#undef CAT
#undef CAT_
#undef LEVEL_SUFFIX
#undef TGT
#undef VEC
#undef VL
#undef MR_MAX
#undef TB_MAX
#undef MASK_T
#undef MASK_OF
#undef LOADM
#undef STOREM
#undef ZERO
#undef BCAST
#undef FMA
#undef ADD
