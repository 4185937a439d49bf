/* The training loop's elementwise passes, each one loop over memory: softmax
   cross-entropy with its gradient, and Adam's update.  NumPy spent a temporary
   array and a pass per operator on them (char LM, 2048 x 96 logits: 1.7 ms for
   the loss, 0.7 ms for Adam per batch).  The formulas are those of
   fastrnn/losses.py and fastrnn/optim.py, in the same order of operations. */
#ifndef FASTRNN_TRAIN_OPS_H
#define FASTRNN_TRAIN_OPS_H
#include <math.h>
#include <stddef.h>
#include "_cells.h"

static inline double fastrnn_exp_f64(double x) { return exp(x); }

#define FASTRNN_PRAGMA(text) _Pragma(#text)
#ifdef _OPENMP
#define FASTRNN_SIMD_REDUCTION(clause) FASTRNN_PRAGMA(omp simd reduction(clause))
#else
#define FASTRNN_SIMD_REDUCTION(clause)
#endif

#define FASTRNN_DEFINE_TRAIN_OPS(SUF, T, EXP, SQRT)                                  \
/* One row of logits z (C classes): returns logsumexp(z) - z[label] and writes       \
   grad = scale * (softmax(z) - onehot(label)).  The row's maximum is subtracted     \
   first, so large logits do not overflow; a NaN anywhere makes the row NaN (through   \
   exp, whichever maximum the vector max picked). */                                  \
static inline double fastrnn_xent_row_##SUF(const T* z, ptrdiff_t C, ptrdiff_t label, \
                                            T scale, T* grad) {                       \
    T top = z[0];                                                                     \
    FASTRNN_SIMD_REDUCTION(max:top)                                                   \
    for (ptrdiff_t j = 1; j < C; j++) top = z[j] > top ? z[j] : top;                  \
    T total = 0;                                                                      \
    FASTRNN_SIMD_REDUCTION(+:total)                                                   \
    for (ptrdiff_t j = 0; j < C; j++) {                                               \
        T e = EXP(z[j] - top);                                                        \
        grad[j] = e;                                                                  \
        total += e;                                                                   \
    }                                                                                 \
    T weight = scale / total;                                                         \
    FASTRNN_SIMD                                                                      \
    for (ptrdiff_t j = 0; j < C; j++) grad[j] *= weight;                              \
    grad[label] -= scale;                                                             \
    return log((double)total) - (double)(z[label] - top);                             \
}                                                                                     \
/* Adam on n contiguous elements (torch.optim.Adam, decay as an L2 term), rounded as  \
   torch rounds it: g = grad + decay p; m = lerp(m, g, w1); v = b2 v + w2 g^2;         \
   p -= step_size m / (sqrt(v) / bc2_sqrt + eps), where w1 = 1 - b1 and w2 = 1 - b2     \
   come from the caller in double (torch's Python floats), and lerp takes torch's       \
   two forms (exactly g at w1 = 1, i.e. b1 = 0). */                                    \
static inline void fastrnn_adam_##SUF(T* p, const T* grad, T* m, T* v, ptrdiff_t n,   \
        T w1, T beta2, T w2, T step_size, T bc2_sqrt, T eps, T decay) {               \
    const int small_w1 = w1 < (T)0.5;                                                 \
    const T rest1 = (T)1 - w1;                                                        \
    FASTRNN_SIMD                                                                      \
    for (ptrdiff_t i = 0; i < n; i++) {                                               \
        T g = decay != 0 ? grad[i] + decay * p[i] : grad[i];                          \
        T mi = small_w1 ? m[i] + w1 * (g - m[i]) : g - (g - m[i]) * rest1;            \
        T vi = v[i] * beta2 + w2 * g * g;                                             \
        m[i] = mi;                                                                    \
        v[i] = vi;                                                                    \
        p[i] -= step_size * mi / (SQRT(vi) / bc2_sqrt + eps);                         \
    }                                                                                 \
}                                                                                     \
/* dW[ids[i]] += rows[i] for each of the n rows (an embedding's gradient). */         \
static inline void fastrnn_scatter_add_##SUF(T* dw, const ptrdiff_t* ids,            \
        const T* rows, ptrdiff_t n, ptrdiff_t D) {                                    \
    for (ptrdiff_t i = 0; i < n; i++) {                                               \
        T* out = dw + ids[i] * D;                                                     \
        const T* in = rows + i * D;                                                   \
        FASTRNN_SIMD                                                                  \
        for (ptrdiff_t j = 0; j < D; j++) out[j] += in[j];                            \
    }                                                                                 \
}

FASTRNN_DEFINE_TRAIN_OPS(f32, float, fastrnn_expf, sqrtf)
FASTRNN_DEFINE_TRAIN_OPS(f64, double, fastrnn_exp_f64, sqrt)

#endif
