/* Elementwise passes of the cells, one row of units [j0, j1) at a time.
   Written in C for `#pragma omp simd`: every branch is a compile-time constant
   of an always-inlined body, so each loop compiles to straight vector code.  Under
   AVX-512 the float32 passes that compute activations run their whole vectors of
   units through _cells_avx512.h first; these loops finish the rest. */
#ifndef FASTRNN_CELLS_H
#define FASTRNN_CELLS_H
#include <stddef.h>
#include "_activations.h"
#include "_cells_avx512.h"
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
    j0 = FASTRNN_LSTM_ROW16_##SUF(pre, c, r, c_out, c_prev_out, H, j0, j1, training);  \
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
    j0 = FASTRNN_GRU_ROW16_##SUF(pre, hn, b_hn, h_prev, h_out, H, j0, j1, has_bias,    \
                                 training);                                            \
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
    j0 = FASTRNN_RNN_ROW16_##SUF(pre, h_out, j0, j1, activation, training);            \
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

/* Backward passes: one row of units [j0, j1) of one step, turning the cached
   activations in d into the gradients of the pre-activations.  dy (the output's
   gradient at this step) may be NULL. */
#define FASTRNN_DEFINE_GRAD_ROWS(SUF, T, TANH)                                        \
FASTRNN_INLINE void fastrnn_lstm_grad_row_body_##SUF(                                 \
        T* d, const T* c, const T* c_prev, const T* dh_in, const T* dy, T* dc,         \
        ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1, const int has_dy) {                   \
    j0 = FASTRNN_LSTM_GRAD_ROW16_##SUF(d, c, c_prev, dh_in, dy, dc, H, j0, j1, has_dy); \
    FASTRNN_SIMD                                                                       \
    for (ptrdiff_t j = j0; j < j1; j++) {                                              \
        T i_ = d[j], f_ = d[H + j], g_ = d[2 * H + j], o_ = d[3 * H + j];              \
        T tc = TANH(c[j]);                                                             \
        T dh = has_dy ? dh_in[j] + dy[j] : dh_in[j];                                   \
        T dcv = dc[j] + dh * o_ * (1 - tc * tc);                                       \
        dc[j] = dcv * f_;                                                              \
        d[j] = dcv * g_ * i_ * (1 - i_);                                               \
        d[H + j] = dcv * c_prev[j] * f_ * (1 - f_);                                    \
        d[2 * H + j] = dcv * i_ * (1 - g_ * g_);                                       \
        d[3 * H + j] = dh * tc * o_ * (1 - o_);                                        \
    }                                                                                  \
}                                                                                      \
/* LSTM: d (4H) holds i, f, g, o; dh = dh_in + dy reaches h_t (or o * tanh c_t with  \
   a projection); dc carries dc_t in and dc_{t-1} out. */                             \
static inline void fastrnn_lstm_grad_row_##SUF(T* d, const T* c, const T* c_prev,    \
        const T* dh_in, const T* dy, T* dc, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1) {  \
    if (dy) fastrnn_lstm_grad_row_body_##SUF(d, c, c_prev, dh_in, dy, dc, H, j0, j1, 1); \
    else fastrnn_lstm_grad_row_body_##SUF(d, c, c_prev, dh_in, dy, dc, H, j0, j1, 0);  \
}                                                                                      \
FASTRNN_INLINE void fastrnn_gru_grad_row_body_##SUF(                                  \
        T* d, T* hn, const T* h_prev, T* dh_io, const T* dy, ptrdiff_t H,               \
        ptrdiff_t j0, ptrdiff_t j1, const int has_dy, const int reset_after) {          \
    FASTRNN_SIMD                                                                       \
    for (ptrdiff_t j = j0; j < j1; j++) {                                              \
        T r_ = d[j], z_ = d[H + j], n_ = d[2 * H + j];                                 \
        T dh = has_dy ? dh_io[j] + dy[j] : dh_io[j];                                   \
        T dan = dh * (1 - z_) * (1 - n_ * n_);                                         \
        d[H + j] = dh * (h_prev[j] - n_) * z_ * (1 - z_);                              \
        d[2 * H + j] = dan;                                                            \
        dh_io[j] = dh * z_;                                                            \
        if (reset_after) {                                                             \
            d[j] = dan * hn[j] * r_ * (1 - r_);                                        \
            hn[j] = dan * r_;                                                          \
        }                                                                              \
    }                                                                                  \
}                                                                                      \
/* GRU: d (3H) holds r, z, n; dh_io carries dh_t in (plus dy) and the direct path    \
   z * dh out.  reset_after: hn holds W_hn h + b_hn and leaves as its gradient;      \
   otherwise r's gradient waits for fastrnn_gru_rh_grad_row. */                       \
static inline void fastrnn_gru_grad_row_##SUF(T* d, T* hn, const T* h_prev,          \
        T* dh_io, const T* dy, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1,                \
        int reset_after) {                                                             \
    if (reset_after) {                                                                 \
        if (dy) fastrnn_gru_grad_row_body_##SUF(d, hn, h_prev, dh_io, dy, H, j0, j1, 1, 1); \
        else fastrnn_gru_grad_row_body_##SUF(d, hn, h_prev, dh_io, dy, H, j0, j1, 0, 1); \
    } else {                                                                           \
        if (dy) fastrnn_gru_grad_row_body_##SUF(d, hn, h_prev, dh_io, dy, H, j0, j1, 1, 0); \
        else fastrnn_gru_grad_row_body_##SUF(d, hn, h_prev, dh_io, dy, H, j0, j1, 0, 0); \
    }                                                                                  \
}                                                                                      \
/* GRU, reset_after=False: drh = d(r * h_{t-1}) gives r's gradient and adds          \
   r * drh to dh_{t-1}. */                                                             \
static inline void fastrnn_gru_rh_grad_row_##SUF(T* d, const T* drh, const T* h_prev, \
        T* dh_io, ptrdiff_t j0, ptrdiff_t j1) {                                        \
    FASTRNN_SIMD                                                                       \
    for (ptrdiff_t j = j0; j < j1; j++) {                                              \
        T r_ = d[j];                                                                   \
        d[j] = drh[j] * h_prev[j] * r_ * (1 - r_);                                     \
        dh_io[j] += drh[j] * r_;                                                       \
    }                                                                                  \
}                                                                                      \
FASTRNN_INLINE void fastrnn_rnn_grad_row_body_##SUF(T* d, const T* dh_in,              \
        const T* dy, ptrdiff_t j0, ptrdiff_t j1, const int activation, const int has_dy) { \
    FASTRNN_SIMD                                                                       \
    for (ptrdiff_t j = j0; j < j1; j++) {                                              \
        T a = d[j];                                                                    \
        T dh = has_dy ? dh_in[j] + dy[j] : dh_in[j];                                   \
        T grad = activation == 0 ? 1 - a * a : activation == 1 ? (a > 0 ? 1 : 0)      \
                                                               : a * (1 - a);          \
        d[j] = dh * grad;                                                              \
    }                                                                                  \
}                                                                                      \
/* Elman RNN: d holds h = act(v) and leaves as dL/dv, dh = dh_in + dy. */             \
static inline void fastrnn_rnn_grad_row_##SUF(T* d, const T* dh_in, const T* dy,     \
        ptrdiff_t j0, ptrdiff_t j1, int activation) {                                  \
    if (dy) {                                                                          \
        if (activation == 0) fastrnn_rnn_grad_row_body_##SUF(d, dh_in, dy, j0, j1, 0, 1); \
        else if (activation == 1) fastrnn_rnn_grad_row_body_##SUF(d, dh_in, dy, j0, j1, 1, 1); \
        else fastrnn_rnn_grad_row_body_##SUF(d, dh_in, dy, j0, j1, 2, 1);              \
    } else {                                                                           \
        if (activation == 0) fastrnn_rnn_grad_row_body_##SUF(d, dh_in, dy, j0, j1, 0, 0); \
        else if (activation == 1) fastrnn_rnn_grad_row_body_##SUF(d, dh_in, dy, j0, j1, 1, 0); \
        else fastrnn_rnn_grad_row_body_##SUF(d, dh_in, dy, j0, j1, 2, 0);              \
    }                                                                                  \
}

FASTRNN_DEFINE_GRAD_ROWS(f32, float, fastrnn_tanhf)
FASTRNN_DEFINE_GRAD_ROWS(f64, double, tanh)
#endif
