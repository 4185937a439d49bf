/* fastrnn's activations: float32 ones as straight-line code (no calls, no branches)
   so that loops over them vectorise; errors measured in tests/test_numerics.py. */
#ifndef FASTRNN_ACTIVATIONS_H
#define FASTRNN_ACTIVATIONS_H
#include <math.h>
#include <stdint.h>
#include <string.h>
static inline float fastrnn_expf(float x) {
    /* exp(x) = 2^n exp(r), x = n ln2 + r, |r| <= ln2/2; exp(r) by Cephes' expf
       polynomial; 2^n written into the exponent bits in two halves so that
       n = 128 (x at the clamp) cannot overflow the exponent field. */
    x = x < -87.33654f ? -87.33654f : x;     /* comparisons keep a NaN a NaN */
    x = x > 89.0f ? 89.0f : x;               /* exp(89) overflows to inf, as it should */
    const float shifter = 12582912.0f;        /* 1.5 * 2^23: adding it rounds to int */
    float t = x * 1.44269504088896341f + shifter;
    float n = t - shifter;
    float r = x - n * 0.693359375f;           /* ln2 in two parts (Cody-Waite) */
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    uint32_t ti;
    memcpy(&ti, &t, 4);
    uint32_t e = ti - 0x4B400000u;            /* n as a two's-complement integer */
    uint32_t e1 = (uint32_t)((int32_t)e >> 1), e2 = e - e1;
    uint32_t b1 = (e1 + 127u) << 23, b2 = (e2 + 127u) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    return p * s1 * s2;
}
static inline float fastrnn_sigmoidf(float x) {
    return 1.0f / (1.0f + fastrnn_expf(-x));
}
static inline float fastrnn_tanhf(float x) {
    /* |x| < 0.625: x P(x^2), a relative-error fit (no cancellation near 0);
       otherwise 1 - 2 / (exp(2|x|) + 1), where the result is >= 0.55. */
    float a = x < 0.0f ? -x : x;
    float z = x * x;
    float p = -5.660177788e-3f;
    p = p * z + 2.059119257e-2f;
    p = p * z - 5.372114838e-2f;
    p = p * z + 1.333112892e-1f;
    p = p * z - 3.333326062e-1f;
    p = p * z + 9.999999961e-1f;
    float small = x * p;
    float big = 1.0f - 2.0f / (fastrnn_expf(2.0f * a) + 1.0f);
    big = x < 0.0f ? -big : big;
    return a < 0.625f ? small : big;
}
static inline double fastrnn_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
/* relu written so that a NaN stays a NaN (x > 0 ? x : 0 would make it 0) */
static inline double fastrnn_relu(double x) { return x < 0 ? 0 : x; }
static inline float fastrnn_reluf(float x) { return x < 0 ? 0 : x; }
#endif
