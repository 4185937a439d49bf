/* AVX-512 bodies of the float32 cells' passes (_cells.h), 16 units a vector: the
   forward passes, and the LSTM's backward pass, which recomputes tanh(c_t).

   The same approximations as _activations.h, formula for formula, written with
   intrinsics (tests/test_numerics.py holds both to the same error bounds).  GCC
   vectorises the scalar versions with mask-register compares and blends for every
   clamp and select; here the clamps are single min/max instructions (whose NaN
   rule keeps a NaN a NaN), 2^n is one vscalefps, and four vectors of units are in
   flight at once, so that the exp -> division -> exp chains of one vector overlap
   the others'.  Measured on one core of an AMD Zen 5 (C harness, LSTM inference
   pass, hidden 128-256): 1.67 ns a unit as GCC vectorised it, 1.12 ns with one
   vector at a time, 0.87 ns with four.  A reciprocal estimate (vrcp14ps) and a
   Newton step in place of the divisions measured slower (1.26 ns).

   Each function runs the units [j0, j1) and returns j1 (the scalar loops of
   _cells.h are left nothing to do), or j0 where it leaves them all to those loops. */
#ifndef FASTRNN_CELLS_AVX512_H
#define FASTRNN_CELLS_AVX512_H
#include <stddef.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#define FASTRNN_V16 static inline __attribute__((always_inline))

/* exp(x) for x in [-87.34, 88]: 2^n exp(r) as fastrnn_expf, n no larger than 127. */
FASTRNN_V16 __m512 fastrnn_exp_core16(__m512 x) {
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* 1 / (1 + exp(-x)).  exp's argument is clamped to [-87.34, 88]: past 88 the result
   is below float32's normal range either way.  max/min return their second operand
   when either is a NaN, so a NaN goes through. */
FASTRNN_V16 __m512 fastrnn_sigmoid16(__m512 x) {
    __m512 m = _mm512_sub_ps(_mm512_setzero_ps(), x);
    m = _mm512_min_ps(_mm512_set1_ps(88.0f), _mm512_max_ps(_mm512_set1_ps(-87.33654f), m));
    return _mm512_div_ps(_mm512_set1_ps(1.0f),
                         _mm512_add_ps(_mm512_set1_ps(1.0f), fastrnn_exp_core16(m)));
}

/* fastrnn_tanhf: x P(x^2) below |x| = 0.625, else 1 - 2 / (exp(2|x|) + 1) with the
   sign of x.  |x| is clamped at 9.5 there, past which tanh rounds to 1 (from 9.01). */
FASTRNN_V16 __m512 fastrnn_tanh16(__m512 x) {
    __m512 a = _mm512_abs_ps(x);
    __m512 z = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(-5.660177788e-3f);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.059119257e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.372114838e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.333112892e-1f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.333326062e-1f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(9.999999961e-1f));
    __m512 small = _mm512_mul_ps(x, p);
    __m512 a2 = _mm512_min_ps(_mm512_set1_ps(9.5f), a);
    __m512 e = fastrnn_exp_core16(_mm512_add_ps(a2, a2));
    __m512 big = _mm512_fnmadd_ps(
        _mm512_set1_ps(2.0f),
        _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))),
        _mm512_set1_ps(1.0f));
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u));
    big = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(big), sign));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, _mm512_set1_ps(0.625f), _CMP_LT_OQ),
                                big, small);
}

/* Four vectors of units at a time while they last, then one, then the last few
   units as one masked vector (lanes past j1 neither read nor written): a row of
   hidden 200 ends in 8 such units, which the scalar loop had run on GCC's
   narrower vectors.  The body reads and writes through FASTRNN_V16_LD / FASTRNN_V16_ST,
   under the mask k_ (all lanes, a constant the compiler folds, until the tail). */
#define FASTRNN_V16_LD(p) _mm512_maskz_loadu_ps(k_, (p))
#define FASTRNN_V16_ST(p, v) _mm512_mask_storeu_ps((p), k_, (v))
#define FASTRNN_V16_UNROLL 4
#define FASTRNN_V16_LOOP(j, j0, j1, ...)                                               \
    ptrdiff_t j = j0;                                                                  \
    for (; j + 16 * FASTRNN_V16_UNROLL <= j1; j += 16 * FASTRNN_V16_UNROLL) {          \
        const __mmask16 k_ = (__mmask16)0xFFFF;                                        \
        _Pragma("GCC unroll 4")                                                        \
        for (int v_ = 0; v_ < FASTRNN_V16_UNROLL; v_++) {                              \
            ptrdiff_t u = j + 16 * v_;                                                 \
            __VA_ARGS__                                                                \
        }                                                                              \
    }                                                                                  \
    for (; j + 16 <= j1; j += 16) {                                                    \
        const __mmask16 k_ = (__mmask16)0xFFFF;                                        \
        ptrdiff_t u = j;                                                               \
        __VA_ARGS__                                                                    \
    }                                                                                  \
    if (j < j1) {                                                                      \
        const __mmask16 k_ = (__mmask16)((1u << (j1 - j)) - 1u);                       \
        ptrdiff_t u = j;                                                               \
        __VA_ARGS__                                                                    \
        j = j1;                                                                        \
    }

/* fastrnn_lstm_row_f32's units [j0, returned j). */
FASTRNN_V16 ptrdiff_t fastrnn_lstm_row16(float* pre, float* c, float* r, float* c_out,
                                         float* c_prev_out, ptrdiff_t H, ptrdiff_t j0,
                                         ptrdiff_t j1, const int training) {
    FASTRNN_V16_LOOP(j, j0, j1, {
        __m512 i_ = fastrnn_sigmoid16(FASTRNN_V16_LD(pre + u));
        __m512 f_ = fastrnn_sigmoid16(FASTRNN_V16_LD(pre + H + u));
        __m512 g_ = fastrnn_tanh16(FASTRNN_V16_LD(pre + 2 * H + u));
        __m512 o_ = fastrnn_sigmoid16(FASTRNN_V16_LD(pre + 3 * H + u));
        __m512 cp = FASTRNN_V16_LD(c + u);
        __m512 cn = _mm512_fmadd_ps(f_, cp, _mm512_mul_ps(i_, g_));
        FASTRNN_V16_ST(c + u, cn);
        FASTRNN_V16_ST(r + u, _mm512_mul_ps(o_, fastrnn_tanh16(cn)));
        if (training) {
            FASTRNN_V16_ST(pre + u, i_);
            FASTRNN_V16_ST(pre + H + u, f_);
            FASTRNN_V16_ST(pre + 2 * H + u, g_);
            FASTRNN_V16_ST(pre + 3 * H + u, o_);
            FASTRNN_V16_ST(c_out + u, cn);
            FASTRNN_V16_ST(c_prev_out + u, cp);
        }
    })
    return j;
}

/* fastrnn_gru_row_f32's units [j0, returned j). */
FASTRNN_V16 ptrdiff_t fastrnn_gru_row16(float* pre, float* hn, const float* b_hn,
                                        const float* h_prev, float* h_out, ptrdiff_t H,
                                        ptrdiff_t j0, ptrdiff_t j1, const int has_bias,
                                        const int training) {
    FASTRNN_V16_LOOP(j, j0, j1, {
        __m512 r_ = fastrnn_sigmoid16(FASTRNN_V16_LD(pre + u));
        __m512 z_ = fastrnn_sigmoid16(FASTRNN_V16_LD(pre + H + u));
        __m512 a = FASTRNN_V16_LD(hn + u);
        if (has_bias)
            a = _mm512_add_ps(a, FASTRNN_V16_LD(b_hn + u));
        __m512 n_ = fastrnn_tanh16(_mm512_fmadd_ps(r_, a, FASTRNN_V16_LD(pre + 2 * H + u)));
        __m512 h = _mm512_fmadd_ps(_mm512_sub_ps(_mm512_set1_ps(1.0f), z_), n_,
                                   _mm512_mul_ps(z_, FASTRNN_V16_LD(h_prev + u)));
        FASTRNN_V16_ST(h_out + u, h);
        if (training) {
            FASTRNN_V16_ST(pre + u, r_);
            FASTRNN_V16_ST(pre + H + u, z_);
            FASTRNN_V16_ST(pre + 2 * H + u, n_);
            FASTRNN_V16_ST(hn + u, a);
        }
    })
    return j;
}

/* fastrnn_rnn_row_f32's units [j0, returned j) for tanh (0) and sigmoid (2); relu (1)
   is left to the scalar loop, which GCC vectorises without selects. */
FASTRNN_V16 ptrdiff_t fastrnn_rnn_row16(float* pre, float* h_out, ptrdiff_t j0,
                                        ptrdiff_t j1, const int activation,
                                        const int training) {
    if (activation == 1)
        return j0;
    FASTRNN_V16_LOOP(j, j0, j1, {
        __m512 v = FASTRNN_V16_LD(pre + u);
        __m512 h = activation == 0 ? fastrnn_tanh16(v) : fastrnn_sigmoid16(v);
        FASTRNN_V16_ST(h_out + u, h);
        if (training)
            FASTRNN_V16_ST(pre + u, h);
    })
    return j;
}

/* fastrnn_lstm_grad_row_f32's units [j0, returned j): its tanh(c_t). */
FASTRNN_V16 ptrdiff_t fastrnn_lstm_grad_row16(float* d, const float* c, const float* c_prev,
                                              const float* dh_in, const float* dy, float* dc,
                                              ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1,
                                              const int has_dy) {
    const __m512 one = _mm512_set1_ps(1.0f);
    FASTRNN_V16_LOOP(j, j0, j1, {
        __m512 i_ = FASTRNN_V16_LD(d + u), f_ = FASTRNN_V16_LD(d + H + u);
        __m512 g_ = FASTRNN_V16_LD(d + 2 * H + u), o_ = FASTRNN_V16_LD(d + 3 * H + u);
        __m512 tc = fastrnn_tanh16(FASTRNN_V16_LD(c + u));
        __m512 dh = FASTRNN_V16_LD(dh_in + u);
        if (has_dy)
            dh = _mm512_add_ps(dh, FASTRNN_V16_LD(dy + u));
        __m512 dcv = _mm512_fmadd_ps(_mm512_mul_ps(dh, o_), _mm512_fnmadd_ps(tc, tc, one),
                                     FASTRNN_V16_LD(dc + u));
        FASTRNN_V16_ST(dc + u, _mm512_mul_ps(dcv, f_));
        FASTRNN_V16_ST(d + u, _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(dcv, g_), i_),
                                              _mm512_sub_ps(one, i_)));
        FASTRNN_V16_ST(d + H + u,
                         _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(dcv, FASTRNN_V16_LD(c_prev + u)),
                                                     f_), _mm512_sub_ps(one, f_)));
        FASTRNN_V16_ST(d + 2 * H + u,
                         _mm512_mul_ps(_mm512_mul_ps(dcv, i_), _mm512_fnmadd_ps(g_, g_, one)));
        FASTRNN_V16_ST(d + 3 * H + u, _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(dh, tc), o_),
                                                      _mm512_sub_ps(one, o_)));
    })
    return j;
}

#define FASTRNN_LSTM_ROW16_f32 fastrnn_lstm_row16
#define FASTRNN_LSTM_GRAD_ROW16_f32 fastrnn_lstm_grad_row16
#define FASTRNN_GRU_ROW16_f32 fastrnn_gru_row16
#define FASTRNN_RNN_ROW16_f32 fastrnn_rnn_row16
#else
#define FASTRNN_LSTM_ROW16_f32(pre, c, r, c_out, c_prev_out, H, j0, j1, training) (j0)
#define FASTRNN_GRU_ROW16_f32(pre, hn, b_hn, h_prev, h_out, H, j0, j1, has_bias, training) (j0)
#define FASTRNN_RNN_ROW16_f32(pre, h_out, j0, j1, activation, training) (j0)
#define FASTRNN_LSTM_GRAD_ROW16_f32(d, c, c_prev, dh_in, dy, dc, H, j0, j1, has_dy) (j0)
#endif
/* float64 keeps the scalar loops. */
#define FASTRNN_LSTM_ROW16_f64(pre, c, r, c_out, c_prev_out, H, j0, j1, training) (j0)
#define FASTRNN_GRU_ROW16_f64(pre, hn, b_hn, h_prev, h_out, H, j0, j1, has_bias, training) (j0)
#define FASTRNN_RNN_ROW16_f64(pre, h_out, j0, j1, activation, training) (j0)
#define FASTRNN_LSTM_GRAD_ROW16_f64(d, c, c_prev, dh_in, dy, dc, H, j0, j1, has_dy) (j0)
#endif
