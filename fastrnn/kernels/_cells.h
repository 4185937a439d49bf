/* Elementwise passes of the cells, one row of units [j0, j1) at a time.
   Written in C for `#pragma omp simd`: every branch is a compile-time constant
   of an always-inlined body, so each loop compiles to straight vector code. */
#ifndef FASTRNN_CELLS_H
#define FASTRNN_CELLS_H
#include <stddef.h>
#include "_activations.h"
#if defined(__GNUC__)
#define FASTRNN_INLINE static inline __attribute__((always_inline))
#else
#define FASTRNN_INLINE static inline
#endif
#ifdef _OPENMP
#define FASTRNN_SIMD _Pragma("omp simd")
#else
#define FASTRNN_SIMD
#endif

#define FASTRNN_DEFINE_ROWS(SUF, T, SIG, TANH, RELU)                                  \
FASTRNN_INLINE void fastrnn_lstm_row_body_##SUF(                                      \
        T* pre, T* c, T* r, T* c_out, T* c_prev_out, ptrdiff_t H, ptrdiff_t j0,        \
        ptrdiff_t j1, const int training) {                                            \
    FASTRNN_SIMD                                                                       \
    for (ptrdiff_t j = j0; j < j1; j++) {                                              \
        T i_ = SIG(pre[j]), f_ = SIG(pre[H + j]);                                      \
        T g_ = TANH(pre[2 * H + j]), o_ = SIG(pre[3 * H + j]);                        \
        T cp = c[j];                                                                   \
        T cn = f_ * cp + i_ * g_;                                                      \
        c[j] = cn;                                                                     \
        r[j] = o_ * TANH(cn);                                                          \
        if (training) {                                                                \
            pre[j] = i_; pre[H + j] = f_; pre[2 * H + j] = g_; pre[3 * H + j] = o_;    \
            c_out[j] = cn; c_prev_out[j] = cp;                                         \
        }                                                                              \
    }                                                                                  \
}                                                                                      \
/* LSTM: pre (4H) pre-activations -> c (in place), r = o * tanh(c); training keeps   \
   the activated gates in pre and c_t, c_{t-1} in c_out, c_prev_out. */               \
static inline void fastrnn_lstm_row_##SUF(T* pre, T* c, T* r, T* c_out,              \
        T* c_prev_out, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1, int training) {        \
    if (training) fastrnn_lstm_row_body_##SUF(pre, c, r, c_out, c_prev_out, H, j0, j1, 1); \
    else fastrnn_lstm_row_body_##SUF(pre, c, r, c_out, c_prev_out, H, j0, j1, 0);     \
}                                                                                      \
FASTRNN_INLINE void fastrnn_gru_row_body_##SUF(                                       \
        T* pre, T* hn, const T* b_hn, const T* h_prev, T* h_out, ptrdiff_t H,           \
        ptrdiff_t j0, ptrdiff_t j1, const int has_bias, const int training) {           \
    FASTRNN_SIMD                                                                       \
    for (ptrdiff_t j = j0; j < j1; j++) {                                              \
        T r_ = SIG(pre[j]), z_ = SIG(pre[H + j]);                                      \
        T a = has_bias ? hn[j] + b_hn[j] : hn[j];                                      \
        T n_ = TANH(pre[2 * H + j] + r_ * a);                                          \
        h_out[j] = (1 - z_) * n_ + z_ * h_prev[j];                                     \
        if (training) {                                                                \
            pre[j] = r_; pre[H + j] = z_; pre[2 * H + j] = n_; hn[j] = a;              \
        }                                                                              \
    }                                                                                  \
}                                                                                      \
/* GRU, reset_after: hn holds W_hn h (without b_hn); training keeps r, z, n in pre    \
   and W_hn h + b_hn in hn. */                                                         \
static inline void fastrnn_gru_row_##SUF(T* pre, T* hn, const T* b_hn,               \
        const T* h_prev, T* h_out, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1,             \
        int training) {                                                                \
    if (b_hn) {                                                                        \
        if (training) fastrnn_gru_row_body_##SUF(pre, hn, b_hn, h_prev, h_out, H, j0, j1, 1, 1); \
        else fastrnn_gru_row_body_##SUF(pre, hn, b_hn, h_prev, h_out, H, j0, j1, 1, 0); \
    } else {                                                                           \
        if (training) fastrnn_gru_row_body_##SUF(pre, hn, b_hn, h_prev, h_out, H, j0, j1, 0, 1); \
        else fastrnn_gru_row_body_##SUF(pre, hn, b_hn, h_prev, h_out, H, j0, j1, 0, 0); \
    }                                                                                  \
}                                                                                      \
/* GRU, reset_after=False, first half: r and z activated in place, rh = r * h_prev. */ \
static inline void fastrnn_gru_rz_row_##SUF(T* pre, const T* h_prev, T* rh,          \
        ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1) {                                     \
    FASTRNN_SIMD                                                                       \
    for (ptrdiff_t j = j0; j < j1; j++) {                                              \
        T r_ = SIG(pre[j]);                                                            \
        pre[j] = r_;                                                                   \
        pre[H + j] = SIG(pre[H + j]);                                                  \
        rh[j] = r_ * h_prev[j];                                                        \
    }                                                                                  \
}                                                                                      \
FASTRNN_INLINE void fastrnn_gru_n_row_body_##SUF(                                     \
        T* pre, const T* hn, const T* b_hn, const T* h_prev, T* h_out, ptrdiff_t H,     \
        ptrdiff_t j0, ptrdiff_t j1, const int has_bias, const int training) {           \
    FASTRNN_SIMD                                                                       \
    for (ptrdiff_t j = j0; j < j1; j++) {                                              \
        T z_ = pre[H + j];                                                             \
        T a = has_bias ? hn[j] + b_hn[j] : hn[j];                                      \
        T n_ = TANH(pre[2 * H + j] + a);                                               \
        h_out[j] = (1 - z_) * n_ + z_ * h_prev[j];                                     \
        if (training) pre[2 * H + j] = n_;                                             \
    }                                                                                  \
}                                                                                      \
/* GRU, reset_after=False, second half: hn holds W_hn (r * h) (without b_hn). */      \
static inline void fastrnn_gru_n_row_##SUF(T* pre, const T* hn, const T* b_hn,       \
        const T* h_prev, T* h_out, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1,             \
        int training) {                                                                \
    if (b_hn) {                                                                        \
        if (training) fastrnn_gru_n_row_body_##SUF(pre, hn, b_hn, h_prev, h_out, H, j0, j1, 1, 1); \
        else fastrnn_gru_n_row_body_##SUF(pre, hn, b_hn, h_prev, h_out, H, j0, j1, 1, 0); \
    } else {                                                                           \
        if (training) fastrnn_gru_n_row_body_##SUF(pre, hn, b_hn, h_prev, h_out, H, j0, j1, 0, 1); \
        else fastrnn_gru_n_row_body_##SUF(pre, hn, b_hn, h_prev, h_out, H, j0, j1, 0, 0); \
    }                                                                                  \
}                                                                                      \
FASTRNN_INLINE void fastrnn_rnn_row_body_##SUF(T* pre, T* h_out, ptrdiff_t j0,        \
        ptrdiff_t j1, const int activation, const int training) {                      \
    FASTRNN_SIMD                                                                       \
    for (ptrdiff_t j = j0; j < j1; j++) {                                              \
        T v = pre[j];                                                                  \
        T h = activation == 0 ? TANH(v) : activation == 1 ? RELU(v) : SIG(v);          \
        h_out[j] = h;                                                                  \
        if (training) pre[j] = h;                                                      \
    }                                                                                  \
}                                                                                      \
/* Elman RNN: h = act(pre), act 0 tanh, 1 relu, 2 sigmoid; training keeps h in pre. */ \
static inline void fastrnn_rnn_row_##SUF(T* pre, T* h_out, ptrdiff_t j0, ptrdiff_t j1, \
        int activation, int training) {                                                \
    if (training) {                                                                    \
        if (activation == 0) fastrnn_rnn_row_body_##SUF(pre, h_out, j0, j1, 0, 1);     \
        else if (activation == 1) fastrnn_rnn_row_body_##SUF(pre, h_out, j0, j1, 1, 1); \
        else fastrnn_rnn_row_body_##SUF(pre, h_out, j0, j1, 2, 1);                     \
    } else {                                                                           \
        if (activation == 0) fastrnn_rnn_row_body_##SUF(pre, h_out, j0, j1, 0, 0);     \
        else if (activation == 1) fastrnn_rnn_row_body_##SUF(pre, h_out, j0, j1, 1, 0); \
        else fastrnn_rnn_row_body_##SUF(pre, h_out, j0, j1, 2, 0);                     \
    }                                                                                  \
}

FASTRNN_DEFINE_ROWS(f32, float, fastrnn_sigmoidf, fastrnn_tanhf, fastrnn_reluf)
FASTRNN_DEFINE_ROWS(f64, double, fastrnn_sigmoid, tanh, fastrnn_relu)
#endif
