/* The floor under a batch-1 step: every step of an RNN at batch 1 reads all of W_hh
   (gates * H * H floats) to make one state vector, and the next step needs the whole
   vector, so a team of threads reads its shares and meets at a barrier, step after
   step.  This times exactly that with nothing else: each thread sums its share of a
   W_hh-sized buffer (AVX-512 loads, four accumulators), then the team waits at an
   OpenMP barrier; best of 5 runs of many passes.  No kernel, fastrnn's or a peer's,
   can run a batch-1 step faster than this on the same threads.

   Build and run (README, "Performance"):
       gcc -O2 -march=native -fopenmp bench/batch1_floor.c -o /tmp/batch1_floor
       /tmp/batch1_floor 2          # threads
*/
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* Seconds of one pass (read every byte once, then the barrier) over n_bytes. */
static double pass_seconds(size_t n_bytes, int threads) {
    size_t n = n_bytes / sizeof(float) / (64 * threads) * (64 * threads);
    float* buf = aligned_alloc(64, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        buf[i] = 1e-3f * (float)(i % 7);
    long passes = (long)(4e8 / (double)n_bytes) + 20;
    double best = 1e9;
    volatile float sink = 0;
    for (int run = 0; run < 5; run++) {
        float total = 0;
        double t0 = now();
#pragma omp parallel num_threads(threads) reduction(+ : total)
        {
            size_t share = n / (size_t)omp_get_num_threads();
            const float* p = buf + share * (size_t)omp_get_thread_num();
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (long r = 0; r < passes; r++) {
                for (size_t i = 0; i < share; i += 64) {
                    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
                    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
                    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
                    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
                }
#pragma omp barrier
            }
            total += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1),
                                                        _mm512_add_ps(a2, a3)));
        }
        double t = (now() - t0) / (double)passes;
        if (t < best)
            best = t;
        sink += total;
    }
    free(buf);
    return best;
}

int main(int argc, char** argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    const int hiddens[] = {128, 256, 512, 700, 1024};
    const struct { const char* cell; int gates; } cells[] = {{"LSTM", 4}, {"GRU", 3}, {"RNN", 1}};
    printf("%d threads: the least time a batch-1 step can take, reading W_hh (float32)\n",
           threads);
    printf("cell     H   W_hh KB   us/step   GB/s   ms for T = 50\n");
    for (int c = 0; c < 3; c++)
        for (int h = 0; h < 5; h++) {
            size_t bytes = (size_t)cells[c].gates * hiddens[h] * hiddens[h] * sizeof(float);
            double s = pass_seconds(bytes, threads);
            printf("%-5s %5d %9zu %9.2f %6.0f %9.3f\n", cells[c].cell, hiddens[h],
                   bytes / 1024, s * 1e6, bytes / s / 1e9, 50 * s * 1e3);
        }
    return 0;
}
