# Pieces shared by every cell kernel: OpenMP shims, thread work split, activations.
#
# All are ``inline`` so they compile into each kernel module and cost no call.
from cython cimport floating
from libc.math cimport tanh
from libc.string cimport memcpy

from fastrnn.kernels.blas cimport gemm

cdef extern from *:
    """
    /* One source with and without OpenMP: the stubs make a serial build behave as
       a team of one thread, and an orphaned barrier binds to the enclosing
       parallel region (OpenMP allows it), so kernels sync with one call. */
    /* Denormals (values below 1e-38 / 1e-308) take a slow microcode path on x86: a
       vanishing gradient can make training many times slower (oneDNN#561).  Each
       kernel thread flushes them to zero while it runs and restores the caller's
       mode after; elsewhere these are no-ops. */
    #if defined(__SSE__) || defined(_M_X64)
    #include <xmmintrin.h>
    static inline unsigned int fastrnn_flush_denormals(void) {
        unsigned int saved = _mm_getcsr();
        _mm_setcsr(saved | 0x8040);          /* FTZ (bit 15) and DAZ (bit 6) */
        return saved;
    }
    static inline void fastrnn_restore_fp_mode(unsigned int saved) { _mm_setcsr(saved); }
    #else
    static inline unsigned int fastrnn_flush_denormals(void) { return 0; }
    static inline void fastrnn_restore_fp_mode(unsigned int saved) { (void)saved; }
    #endif
    /* The per-step barrier of a kernel's team.  A spin barrier whose waiters yield
       the core after a short spin: libgomp's barrier spins for long, and when
       another process holds one of the cores, a spinning waiter keeps its own
       team-mate off the core it needs, costing a scheduler time slice per step
       (measured: 20 steps of a B=32 H=128 LSTM went from 3 ms to 90 ms with one
       core busy).  Yielding hands the core over at once. */
    #if defined(__GNUC__) && defined(_OPENMP)
    #include <sched.h>
    #if defined(__x86_64__) || defined(__i386__)
    #include <immintrin.h>
    #define FASTRNN_CPU_RELAX() _mm_pause()
    #else
    #define FASTRNN_CPU_RELAX() ((void)0)
    #endif
    typedef struct { int count; int sense; } fastrnn_team_sync;
    static inline void fastrnn_team_barrier(fastrnn_team_sync* s, int nt, int* my_sense) {
        if (nt <= 1) return;
        int target = !*my_sense;
        *my_sense = target;
        if (__atomic_add_fetch(&s->count, 1, __ATOMIC_ACQ_REL) == nt) {
            __atomic_store_n(&s->count, 0, __ATOMIC_RELAXED);
            __atomic_store_n(&s->sense, target, __ATOMIC_RELEASE);
        } else {
            unsigned spins = 0;
            while (__atomic_load_n(&s->sense, __ATOMIC_ACQUIRE) != target) {
                if (++spins < 256) FASTRNN_CPU_RELAX(); else sched_yield();
            }
        }
    }
    #else
    typedef struct { int count; int sense; } fastrnn_team_sync;
    static inline void fastrnn_team_barrier(fastrnn_team_sync* s, int nt, int* my_sense) {
        (void)s; (void)my_sense; (void)nt;
    #ifdef _OPENMP
    #pragma omp barrier
    #endif
    }
    #endif
    #ifdef _OPENMP
    #include <omp.h>
    #define FASTRNN_OPENMP 1
    static inline void fastrnn_barrier(void) {
    #pragma omp barrier
    }
    #else
    #define FASTRNN_OPENMP 0
    static inline int omp_get_thread_num(void) { return 0; }
    static inline int omp_get_num_threads(void) { return 1; }
    static inline int omp_get_max_threads(void) { return 1; }
    static inline void fastrnn_barrier(void) {}
    #endif
    """
    bint FASTRNN_OPENMP
    ctypedef struct fastrnn_team_sync:
        int count
        int sense
    void fastrnn_team_barrier(fastrnn_team_sync* s, int nt, int* my_sense) noexcept nogil
    unsigned int fastrnn_flush_denormals() noexcept nogil
    void fastrnn_restore_fp_mode(unsigned int saved) noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_threads() noexcept nogil
    int omp_get_max_threads() noexcept nogil
    void fastrnn_barrier() noexcept nogil

cdef extern from "fastrnn/kernels/_cells.h":
    # _activations.h and _cells.h ship beside this file; fastrnn.get_include()
    # is the directory a downstream build adds to its C include path.
    float fastrnn_sigmoidf(float) noexcept nogil
    float fastrnn_tanhf(float) noexcept nogil
    double fastrnn_sigmoid(double) noexcept nogil
    void fastrnn_lstm_row_f32(float* pre, float* c, float* r, float* c_out,
                              float* c_prev_out, Py_ssize_t H, Py_ssize_t j0,
                              Py_ssize_t j1, int training) noexcept nogil
    void fastrnn_lstm_row_f64(double* pre, double* c, double* r, double* c_out,
                              double* c_prev_out, Py_ssize_t H, Py_ssize_t j0,
                              Py_ssize_t j1, int training) noexcept nogil
    void fastrnn_gru_row_f32(float* pre, float* hn, const float* b_hn,
                             const float* h_prev, float* h_out, Py_ssize_t H,
                             Py_ssize_t j0, Py_ssize_t j1, int training) noexcept nogil
    void fastrnn_gru_row_f64(double* pre, double* hn, const double* b_hn,
                             const double* h_prev, double* h_out, Py_ssize_t H,
                             Py_ssize_t j0, Py_ssize_t j1, int training) noexcept nogil
    void fastrnn_gru_rz_row_f32(float* pre, const float* h_prev, float* rh, Py_ssize_t H,
                                Py_ssize_t j0, Py_ssize_t j1) noexcept nogil
    void fastrnn_gru_rz_row_f64(double* pre, const double* h_prev, double* rh,
                                Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil
    void fastrnn_gru_n_row_f32(float* pre, const float* hn, const float* b_hn,
                               const float* h_prev, float* h_out, Py_ssize_t H,
                               Py_ssize_t j0, Py_ssize_t j1, int training) noexcept nogil
    void fastrnn_gru_n_row_f64(double* pre, const double* hn, const double* b_hn,
                               const double* h_prev, double* h_out, Py_ssize_t H,
                               Py_ssize_t j0, Py_ssize_t j1, int training) noexcept nogil
    void fastrnn_rnn_row_f32(float* pre, float* h_out, Py_ssize_t j0, Py_ssize_t j1,
                             int activation, int training) noexcept nogil
    void fastrnn_rnn_row_f64(double* pre, double* h_out, Py_ssize_t j0, Py_ssize_t j1,
                             int activation, int training) noexcept nogil
    void fastrnn_lstm_grad_row_f32(float* d, const float* c, const float* c_prev,
                                   const float* dh_in, const float* dy, float* dc,
                                   Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil
    void fastrnn_lstm_grad_row_f64(double* d, const double* c, const double* c_prev,
                                   const double* dh_in, const double* dy, double* dc,
                                   Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil
    void fastrnn_gru_grad_row_f32(float* d, float* hn, const float* h_prev, float* dh_io,
                                  const float* dy, Py_ssize_t H, Py_ssize_t j0,
                                  Py_ssize_t j1, int reset_after) noexcept nogil
    void fastrnn_gru_grad_row_f64(double* d, double* hn, const double* h_prev,
                                  double* dh_io, const double* dy, Py_ssize_t H,
                                  Py_ssize_t j0, Py_ssize_t j1, int reset_after) noexcept nogil
    void fastrnn_gru_rh_grad_row_f32(float* d, const float* drh, const float* h_prev,
                                     float* dh_io, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil
    void fastrnn_gru_rh_grad_row_f64(double* d, const double* drh, const double* h_prev,
                                     double* dh_io, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil
    void fastrnn_rnn_grad_row_f32(float* d, const float* dh_in, const float* dy,
                                  Py_ssize_t j0, Py_ssize_t j1, int activation) noexcept nogil
    void fastrnn_rnn_grad_row_f64(double* d, const double* dh_in, const double* dy,
                                  Py_ssize_t j0, Py_ssize_t j1, int activation) noexcept nogil

cdef extern from "fastrnn/kernels/_packed_gemm.h":
    # Columns of one packed group, one float32 vector register (16 under AVX-512, else 8).
    enum: FASTRNN_GROUP
    Py_ssize_t fastrnn_packed_size(Py_ssize_t n_gates, Py_ssize_t H, Py_ssize_t K) noexcept nogil
    Py_ssize_t fastrnn_gate_packed_size_f32(Py_ssize_t H, Py_ssize_t K) noexcept nogil
    Py_ssize_t fastrnn_panel_size(Py_ssize_t K) noexcept nogil
    Py_ssize_t fastrnn_gate_packed_size_f64(Py_ssize_t H, Py_ssize_t K) noexcept nogil
    void fastrnn_pack_f32(const float* w, Py_ssize_t rs_k, Py_ssize_t cs_n, Py_ssize_t K,
                          Py_ssize_t n_gates, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                          float* packed) noexcept nogil
    void fastrnn_pack_f64(const double* w, Py_ssize_t rs_k, Py_ssize_t cs_n, Py_ssize_t K,
                          Py_ssize_t n_gates, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                          double* packed) noexcept nogil
    void fastrnn_pack_stacked_f32(const float* w1, Py_ssize_t K1, const float* w2,
                                  Py_ssize_t K2, Py_ssize_t n_gates, Py_ssize_t H,
                                  Py_ssize_t j0, Py_ssize_t j1, float* packed) noexcept nogil
    void fastrnn_pack_stacked_f64(const double* w1, Py_ssize_t K1, const double* w2,
                                  Py_ssize_t K2, Py_ssize_t n_gates, Py_ssize_t H,
                                  Py_ssize_t j0, Py_ssize_t j1, double* packed) noexcept nogil
    void fastrnn_packed_gemm_f32(Py_ssize_t M, Py_ssize_t K, const float* a, Py_ssize_t lda,
                                 const float* packed, Py_ssize_t n_gates, Py_ssize_t H,
                                 Py_ssize_t j0, Py_ssize_t j1, float* c, Py_ssize_t ldc,
                                 int accumulate, const float* bias) noexcept nogil
    void fastrnn_packed_gemm_f64(Py_ssize_t M, Py_ssize_t K, const double* a, Py_ssize_t lda,
                                 const double* packed, Py_ssize_t n_gates, Py_ssize_t H,
                                 Py_ssize_t j0, Py_ssize_t j1, double* c, Py_ssize_t ldc,
                                 int accumulate, const double* bias) noexcept nogil
    void fastrnn_panel_gemm_f32(Py_ssize_t M, Py_ssize_t K, const float* a, Py_ssize_t lda,
                                const float* w, Py_ssize_t n_gates, Py_ssize_t H,
                                Py_ssize_t j0, Py_ssize_t j1, float* c, Py_ssize_t ldc,
                                int accumulate, const float* bias,
                                float* panel) noexcept nogil
    void fastrnn_panel_gemm_f64(Py_ssize_t M, Py_ssize_t K, const double* a, Py_ssize_t lda,
                                const double* w, Py_ssize_t n_gates, Py_ssize_t H,
                                Py_ssize_t j0, Py_ssize_t j1, double* c, Py_ssize_t ldc,
                                int accumulate, const double* bias,
                                double* panel) noexcept nogil

    Py_ssize_t fastrnn_weight_grad_size_f32(Py_ssize_t n_src, const Py_ssize_t* k,
                                            Py_ssize_t rows) noexcept nogil
    Py_ssize_t fastrnn_weight_grad_size_f64(Py_ssize_t n_src, const Py_ssize_t* k,
                                            Py_ssize_t rows) noexcept nogil
    void fastrnn_weight_grad_f32(Py_ssize_t N, const float* d, Py_ssize_t ldd, Py_ssize_t m0,
                                 Py_ssize_t m1, Py_ssize_t n_src, const float** a,
                                 const Py_ssize_t* lda, const Py_ssize_t* k, float** dw,
                                 const Py_ssize_t* ldw, float* db, float* packed) noexcept nogil
    void fastrnn_weight_grad_f64(Py_ssize_t N, const double* d, Py_ssize_t ldd, Py_ssize_t m0,
                                 Py_ssize_t m1, Py_ssize_t n_src, const double** a,
                                 const Py_ssize_t* lda, const Py_ssize_t* k, double** dw,
                                 const Py_ssize_t* ldw, double* db, double* packed) noexcept nogil

cdef extern from "fastrnn/kernels/_blocks.h":
    # Scratch blocks kept from one kernel call to the next (no page faults).
    void* fastrnn_block_alloc(size_t n_bytes) noexcept nogil
    void fastrnn_block_free(void* block) noexcept nogil

cdef extern from "fastrnn/kernels/_gemv_rows.h":
    void fastrnn_gemv_rows_f32(const float* w, Py_ssize_t ldw, Py_ssize_t K, const float* v,
                               Py_ssize_t ldv, Py_ssize_t nv, const float* bias, float* y,
                               Py_ssize_t ldy, Py_ssize_t r0, Py_ssize_t r1,
                               int accumulate) noexcept nogil
    void fastrnn_gemv_rows_f64(const double* w, Py_ssize_t ldw, Py_ssize_t K,
                               const double* v, Py_ssize_t ldv, Py_ssize_t nv,
                               const double* bias, double* y, Py_ssize_t ldy, Py_ssize_t r0,
                               Py_ssize_t r1, int accumulate) noexcept nogil


cdef inline void gemv_rows(const floating* w, Py_ssize_t ldw, Py_ssize_t K,
                           const floating* v, Py_ssize_t ldv, Py_ssize_t nv,
                           const floating* bias, floating* y, Py_ssize_t ldy, Py_ssize_t r0,
                           Py_ssize_t r1, bint accumulate) noexcept nogil:
    """y[b, r] (+)= bias[r] + w[r, :K] . v[b, :K] for rows r0 <= r < r1 of the row-major
    w and the nv vectors v: few vectors, read straight from the weights (_gemv_rows.h)."""
    if floating is float:
        fastrnn_gemv_rows_f32(w, ldw, K, v, ldv, nv, bias, y, ldy, r0, r1, accumulate)
    else:
        fastrnn_gemv_rows_f64(w, ldw, K, v, ldv, nv, bias, y, ldy, r0, r1, accumulate)


cdef enum:
    # Rows of input projection computed at a time in inference, so that the
    # scratch stays bounded whatever T is (one GEMM per chunk, not per step).
    CHUNK_ROWS = 512
    # The input gradient dx = d_gates . W_ih, when it has at most this many columns,
    # runs on the packed micro-kernel: BLAS would copy all of d_gates (N x gates) for
    # them (measured, backward alone on one thread, batch 32: LSTM(128, 128) 0.91-0.97x
    # the time; LSTM(32, 128), GRU(128, 256) and, through BLAS, LSTM(512, 512) even).
    DX_PACKED_MAX_INPUTS = 128
    # Packing the recurrent weights costs about 2-5 batch-1 steps (half a step at
    # batch 32) and halves every step after; shorter sequences (a stream's single
    # step among them) keep calling BLAS.
    PACK_MIN_ROWS = 16
    # A batch of at most this many rows multiplies the recurrent weights as the layer
    # holds them (gemv_rows, the streams' product), unpacked: a step reads each weight
    # once, in the layer's row order, and no call packs them.  Measured in one
    # process, alternating, T = 50, input = hidden 128-1024, two threads, batch 1:
    # LSTM 0.73-0.93x the packed micro-kernel's time, GRU 0.82-0.96x, Elman RNN
    # 0.90-0.99x; at batch 2 and 4 (LSTM) even to 1.05x.
    ROW_GEMV_MAX_ROWS = 1


cdef inline void split_units(Py_ssize_t n, int tid, int nt,
                             Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """[lo, hi): the share of thread tid (of nt) of n units, in whole packed groups, so
    that each thread's columns start on a vector boundary of every gate row (the packed
    weights' groups, vector loads, no false sharing).  Each boundary is the group
    boundary nearest the even split, the last few units going to the last thread:
    the gates' tails share groups there (_packed_gemm.h), so hidden 200 splits 96 /
    104 units, 24 and 26 groups of an LSTM's four gates, where 112 / 88 had taken
    28 and 24 (by whole groups per gate, as hidden 208)."""
    lo[0] = _group_boundary(n, tid, nt)
    hi[0] = _group_boundary(n, tid + 1, nt)


cdef inline Py_ssize_t _group_boundary(Py_ssize_t n, int tid, int nt) noexcept nogil:
    """The group boundary nearest n * tid / nt (0 and n at the ends)."""
    if tid >= nt:
        return n
    return min(n, (2 * n * tid + nt * FASTRNN_GROUP) // (2 * nt * FASTRNN_GROUP)
               * FASTRNN_GROUP)


cdef inline bint columns_split_evener(Py_ssize_t n_gates, Py_ssize_t H, int nt) noexcept nogil:
    """Whether an even share of all n_gates * H gate columns (split_units over them, as
    one block) leaves the busiest thread fewer packed groups than its units of every
    gate do (split_units over H): a small or odd hidden size splits its units unevenly
    in whole groups (hidden 83: 48 / 35 units, 12 / 9 groups of an LSTM's four gates,
    where the columns split 11 / 10)."""
    cdef Py_ssize_t lo, hi, by_units = 0, by_columns = 0
    cdef int t
    for t in range(nt):
        split_units(H, t, nt, &lo, &hi)
        by_units = max(by_units, (n_gates * (hi - lo) + FASTRNN_GROUP - 1) // FASTRNN_GROUP)
        split_units(n_gates * H, t, nt, &lo, &hi)
        by_columns = max(by_columns, (hi - lo + FASTRNN_GROUP - 1) // FASTRNN_GROUP)
    return by_columns < by_units


cdef inline void split_rows(Py_ssize_t n, int tid, int nt,
                            Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """[lo, hi): the share of thread tid (of nt) of n rows."""
    lo[0] = n * tid // nt
    hi[0] = n * (tid + 1) // nt


cdef inline floating sigmoid(floating v) noexcept nogil:
    """1 / (1 + exp(-v)); exp overflows to inf for v << 0, giving exactly 0, never NaN.

    float32 uses the vectorisable fastrnn_sigmoidf (max relative error 1.5e-7),
    float64 the C library's exp (float64 is the accuracy reference)."""
    if floating is float:
        return fastrnn_sigmoidf(v)
    else:
        return fastrnn_sigmoid(v)


cdef inline floating tanh_(floating v) noexcept nogil:
    """tanh; float32 through fastrnn_tanhf (max relative error 1.5e-7)."""
    if floating is float:
        return fastrnn_tanhf(v)
    else:
        return tanh(v)


cdef inline Py_ssize_t total_rows(Py_ssize_t T, Py_ssize_t B,
                                  const Py_ssize_t* batch_sizes) noexcept nogil:
    """Rows of the packed sequence: sum of batch_sizes, or T * B when it is NULL."""
    cdef Py_ssize_t t, n = 0
    if batch_sizes == NULL:
        return T * B
    for t in range(T):
        n += batch_sizes[t]
    return n


cdef inline Py_ssize_t active_rows(Py_ssize_t B, const Py_ssize_t* batch_sizes,
                                   Py_ssize_t t) noexcept nogil:
    return B if batch_sizes == NULL else batch_sizes[t]


cdef enum:
    # A team splits the batch, not the hidden units, from this many rows per thread
    # and while the weights every thread reads at every step stay well inside the L3
    # cache.
    BATCH_SPLIT_MIN_ROWS = 4
    BATCH_SPLIT_MAX_BYTES = 2 * 1024 * 1024


cdef inline bint batch_split_pays(Py_ssize_t B, Py_ssize_t weight_bytes,
                                  int nt) noexcept nogil:
    """Whether a team of nt threads should split the batch (split_batch): each thread
    then carries all hidden units of its own rows through the whole sequence, with no
    barrier between steps, on weights packed once for all.  Split by units, every
    step ends in a barrier, and a thread that the shared machine slows down holds the
    other up at each one; split by rows, every thread reads all ``weight_bytes`` of
    the recurrent weights at every step (measurements at the cells' callers)."""
    return nt > 1 and B >= BATCH_SPLIT_MIN_ROWS * nt and weight_bytes <= BATCH_SPLIT_MAX_BYTES


cdef inline Py_ssize_t _batch_bound(Py_ssize_t T, Py_ssize_t B,
                                    const Py_ssize_t* batch_sizes, Py_ssize_t n_rows,
                                    int k, int nt) noexcept nogil:
    """The first row of share k: the fewest leading rows holding k/nt of the row-steps."""
    cdef Py_ssize_t target = n_rows * k // nt, done = 0, r, t_end = T
    if k >= nt:
        return B
    for r in range(B):
        if done >= target:
            return r
        # Row r runs the steps t with batch_sizes[t] > r: batch_sizes never grows.
        while t_end > 0 and batch_sizes[t_end - 1] <= r:
            t_end -= 1
        done += t_end
    return B


cdef inline void split_batch(Py_ssize_t T, Py_ssize_t B, const Py_ssize_t* batch_sizes,
                             int tid, int nt, Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """[lo, hi): the rows thread tid (of nt) carries through a whole sequence when the
    team splits the batch; shares of about equal row-steps (rows sorted by
    decreasing length, so a share of long rows is a share of fewer rows)."""
    if batch_sizes == NULL:
        split_rows(B, tid, nt, lo, hi)
        return
    cdef Py_ssize_t n_rows = total_rows(T, B, batch_sizes)
    lo[0] = _batch_bound(T, B, batch_sizes, n_rows, tid, nt)
    hi[0] = _batch_bound(T, B, batch_sizes, n_rows, tid + 1, nt)


cdef inline void combine_bias(floating* out, Py_ssize_t lo, Py_ssize_t hi,
                              const floating* b1, const floating* b2) noexcept nogil:
    """out[lo:hi] = b1[lo:hi] + b2[lo:hi] (either may be NULL): the one bias row that
    the input projection adds (step_gemm's ``bias``)."""
    cdef Py_ssize_t j
    cdef floating v
    for j in range(lo, hi):
        v = 0
        if b1 != NULL:
            v = v + b1[j]
        if b2 != NULL:
            v = v + b2[j]
        out[j] = v


cdef inline void column_sums(floating* out, const floating* src, Py_ssize_t rows,
                             Py_ssize_t ld, Py_ssize_t lo, Py_ssize_t hi,
                             bint accumulate) noexcept nogil:
    """out[lo:hi] (+)= sum over r < rows of src[r, lo:hi].  The backward passes add
    each step's rows while the pass has them in cache: summing the whole sequence's
    gates afterwards read them once more from memory (a third of an LSTM backward's
    elementwise time at batch 32 / hidden 128)."""
    cdef Py_ssize_t r, j
    if not accumulate:
        for j in range(lo, hi):
            out[j] = 0
    for r in range(rows):
        for j in range(lo, hi):
            out[j] += src[r * ld + j]


cdef inline void copy_block(floating* dst, Py_ssize_t ldd, const floating* src,
                            Py_ssize_t lds, Py_ssize_t rows, Py_ssize_t lo,
                            Py_ssize_t hi) noexcept nogil:
    """dst[r, lo:hi] = src[r, lo:hi] (src NULL: zeros) for r < rows."""
    cdef Py_ssize_t r, j
    for r in range(rows):
        for j in range(lo, hi):
            dst[r * ldd + j] = 0 if src == NULL else src[r * lds + j]


cdef inline Py_ssize_t chunk_steps(Py_ssize_t T, Py_ssize_t B, bint training) noexcept nogil:
    """Time steps whose input projection is computed by one GEMM.

    Training keeps every step's gates for backward, so it projects all T at once;
    inference works through chunks of about CHUNK_ROWS rows.
    """
    if training:
        return T
    return max(1, min(T, CHUNK_ROWS // max(B, 1)))


cdef inline Py_ssize_t rows_between(Py_ssize_t B, const Py_ssize_t* batch_sizes,
                                    Py_ssize_t t_lo, Py_ssize_t t_hi) noexcept nogil:
    """Packed rows of the time steps [t_lo, t_hi)."""
    cdef Py_ssize_t t, n = 0
    if batch_sizes == NULL:
        return (t_hi - t_lo) * B
    for t in range(t_lo, t_hi):
        n += batch_sizes[t]
    return n


cdef inline Py_ssize_t rows_finishing_from(Py_ssize_t T, Py_ssize_t B,
                                           const Py_ssize_t* batch_sizes,
                                           Py_ssize_t t, bint up,
                                           Py_ssize_t active) noexcept nogil:
    """First row whose sequence ends at step t when walking time up (or down).

    Rows are sorted by decreasing length, so the rows still active at the next
    step come first; the rest, [result, active), take their final state here.
    """
    cdef Py_ssize_t nxt = t + 1 if up else t - 1
    if nxt < 0 or nxt >= T:
        return 0
    return min(active, active_rows(B, batch_sizes, nxt))


# One name per row pass over the fused type; each picks its float32 or float64 C body.

cdef inline void lstm_row(floating* pre, floating* c, floating* r, floating* c_out,
                          floating* c_prev_out, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                          bint training) noexcept nogil:
    if floating is float:
        fastrnn_lstm_row_f32(pre, c, r, c_out, c_prev_out, H, j0, j1, training)
    else:
        fastrnn_lstm_row_f64(pre, c, r, c_out, c_prev_out, H, j0, j1, training)


cdef inline void gru_row(floating* pre, floating* hn, const floating* b_hn,
                         const floating* h_prev, floating* h_out, Py_ssize_t H,
                         Py_ssize_t j0, Py_ssize_t j1, bint training) noexcept nogil:
    if floating is float:
        fastrnn_gru_row_f32(pre, hn, b_hn, h_prev, h_out, H, j0, j1, training)
    else:
        fastrnn_gru_row_f64(pre, hn, b_hn, h_prev, h_out, H, j0, j1, training)


cdef inline void gru_rz_row(floating* pre, const floating* h_prev, floating* rh,
                            Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    if floating is float:
        fastrnn_gru_rz_row_f32(pre, h_prev, rh, H, j0, j1)
    else:
        fastrnn_gru_rz_row_f64(pre, h_prev, rh, H, j0, j1)


cdef inline void gru_n_row(floating* pre, const floating* hn, const floating* b_hn,
                           const floating* h_prev, floating* h_out, Py_ssize_t H,
                           Py_ssize_t j0, Py_ssize_t j1, bint training) noexcept nogil:
    if floating is float:
        fastrnn_gru_n_row_f32(pre, hn, b_hn, h_prev, h_out, H, j0, j1, training)
    else:
        fastrnn_gru_n_row_f64(pre, hn, b_hn, h_prev, h_out, H, j0, j1, training)


cdef inline void rnn_row(floating* pre, floating* h_out, Py_ssize_t j0, Py_ssize_t j1,
                         int activation, bint training) noexcept nogil:
    if floating is float:
        fastrnn_rnn_row_f32(pre, h_out, j0, j1, activation, training)
    else:
        fastrnn_rnn_row_f64(pre, h_out, j0, j1, activation, training)


cdef inline void lstm_grad_row(floating* d, const floating* c, const floating* c_prev,
                               const floating* dh_in, const floating* dy, floating* dc,
                               Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    if floating is float:
        fastrnn_lstm_grad_row_f32(d, c, c_prev, dh_in, dy, dc, H, j0, j1)
    else:
        fastrnn_lstm_grad_row_f64(d, c, c_prev, dh_in, dy, dc, H, j0, j1)


cdef inline void gru_grad_row(floating* d, floating* hn, const floating* h_prev,
                              floating* dh_io, const floating* dy, Py_ssize_t H,
                              Py_ssize_t j0, Py_ssize_t j1, bint reset_after) noexcept nogil:
    if floating is float:
        fastrnn_gru_grad_row_f32(d, hn, h_prev, dh_io, dy, H, j0, j1, reset_after)
    else:
        fastrnn_gru_grad_row_f64(d, hn, h_prev, dh_io, dy, H, j0, j1, reset_after)


cdef inline void gru_rh_grad_row(floating* d, const floating* drh, const floating* h_prev,
                                 floating* dh_io, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    if floating is float:
        fastrnn_gru_rh_grad_row_f32(d, drh, h_prev, dh_io, j0, j1)
    else:
        fastrnn_gru_rh_grad_row_f64(d, drh, h_prev, dh_io, j0, j1)


cdef inline void rnn_grad_row(floating* d, const floating* dh_in, const floating* dy,
                              Py_ssize_t j0, Py_ssize_t j1, int activation) noexcept nogil:
    if floating is float:
        fastrnn_rnn_grad_row_f32(d, dh_in, dy, j0, j1, activation)
    else:
        fastrnn_rnn_grad_row_f64(d, dh_in, dy, j0, j1, activation)


cdef inline void gates_gemm(Py_ssize_t m, Py_ssize_t n_gates, Py_ssize_t H, Py_ssize_t j0,
                            Py_ssize_t j1, Py_ssize_t k, const floating* a, Py_ssize_t lda,
                            const floating* w, floating beta, floating* c,
                            Py_ssize_t ldc) noexcept nogil:
    """c[:, g*H + j0 : g*H + j1] := a . w[g*H + j0 : g*H + j1, :]^T + beta c, g < n_gates.

    ``w`` is (n_gates*H, k) row-major.  A thread owning every unit makes one call
    over all gates (one packing of ``a`` instead of n_gates); otherwise one per gate.
    """
    cdef Py_ssize_t g
    if j0 == 0 and j1 == H:
        gemm(False, True, m, n_gates * H, k, <floating>1, a, lda, w, k, beta, c, ldc)
        return
    for g in range(n_gates):
        gemm(False, True, m, j1 - j0, k, <floating>1, a, lda, w + (g * H + j0) * k, k,
             beta, c + g * H + j0, ldc)


cdef inline void weight_grads(Py_ssize_t n_rows, Py_ssize_t m, const floating* d,
                              Py_ssize_t ldd, Py_ssize_t n_src, const floating** a,
                              const Py_ssize_t* lda, const Py_ssize_t* k, floating** dw,
                              const Py_ssize_t* ldw, floating* db, int tid,
                              int nt) noexcept nogil:
    """dw[s][:m, :k[s]] := d[:, :m]^T . a[s][:, :k[s]] over n_rows rows for each source
    s < n_src: the whole-sequence weight gradients that share one d.  Each thread
    makes the rows of its units of m on the packed micro-kernel's tiles
    (fastrnn_weight_grad, _packed_gemm.h): d is copied once, a chunk of rows at a
    time, for all the sources, and its copy summed into db[:m] when db is not NULL
    (a bias gradient); BLAS would copy d (the big operand) once per weight and per
    thread, and the sources (the narrow side) once per thread too.  Should its
    scratch not be allocated, the thread makes the same rows with BLAS."""
    cdef Py_ssize_t m0, m1, s
    cdef floating* packed
    split_units(m, tid, nt, &m0, &m1)
    if m1 <= m0:
        return
    if floating is float:
        packed = <floating*>fastrnn_block_alloc(
            fastrnn_weight_grad_size_f32(n_src, k, m1 - m0) * sizeof(floating))
    else:
        packed = <floating*>fastrnn_block_alloc(
            fastrnn_weight_grad_size_f64(n_src, k, m1 - m0) * sizeof(floating))
    if packed != NULL:
        if floating is float:
            fastrnn_weight_grad_f32(n_rows, d, ldd, m0, m1, n_src, a, lda, k, dw, ldw, db,
                                    packed)
        else:
            fastrnn_weight_grad_f64(n_rows, d, ldd, m0, m1, n_src, a, lda, k, dw, ldw, db,
                                    packed)
        fastrnn_block_free(packed)
        return
    for s in range(n_src):
        gemm(True, False, m1 - m0, k[s], n_rows, <floating>1, d + m0, ldd, a[s], lda[s],
             <floating>0, dw[s] + m0 * ldw[s], ldw[s])
    if db != NULL:
        column_sums(db, d, n_rows, ldd, m0, m1, False)


cdef inline void weight_grad(Py_ssize_t n_rows, Py_ssize_t m, Py_ssize_t k,
                             const floating* d, Py_ssize_t ldd, const floating* a,
                             Py_ssize_t lda, floating* dw, Py_ssize_t ldw,
                             int tid, int nt) noexcept nogil:
    """dw[:m, :k] := d[:, :m]^T . a[:, :k] over n_rows rows (weight_grads, one source)."""
    weight_grads(n_rows, m, d, ldd, 1, &a, &lda, &k, &dw, &ldw, NULL, tid, nt)


cdef inline void stacked_weight_grads(Py_ssize_t n_rows, Py_ssize_t m, const floating* d,
                                      Py_ssize_t ldd, const floating* a1, Py_ssize_t k1,
                                      const floating* a2, Py_ssize_t k2, floating* dw1,
                                      floating* dw2, floating* db, int tid,
                                      int nt) noexcept nogil:
    """dw1 (m, k1) := d[:, :m]^T . a1 and dw2 (m, k2) := d[:, :m]^T . a2 over n_rows
    rows (a1, a2 row-major, k1 and k2 wide), d read once for both and, with db, for
    its column sums (weight_grads)."""
    cdef const floating* a[2]
    cdef floating* dw[2]
    cdef Py_ssize_t k[2]
    a[0], a[1], dw[0], dw[1], k[0], k[1] = a1, a2, dw1, dw2, k1, k2
    weight_grads(n_rows, m, d, ldd, 2, a, k, k, dw, k, db, tid, nt)


cdef inline void publish_step(const floating* h_new, const floating* h_old, Py_ssize_t ld,
                              Py_ssize_t ld_out, Py_ssize_t bs, Py_ssize_t finish,
                              Py_ssize_t lo, Py_ssize_t hi, floating* y, Py_ssize_t ldy,
                              floating* h_prevs, floating* h_n) noexcept nogil:
    """Hand a step's new states out, rows b < bs, units [lo, hi) (the states have row
    stride ``ld``, h_prevs and h_n ``ld_out``; ``y`` and ``h_prevs`` point at the
    step's first packed row): y[b] = h_new[b]; h_prevs[b] = h_old[b] when training
    (h_prevs not NULL); rows b >= finish end their sequence here: h_n[b] = h_new[b]."""
    cdef Py_ssize_t b, j
    for b in range(bs):
        for j in range(lo, hi):
            y[b * ldy + j] = h_new[b * ld + j]
        if h_prevs != NULL:
            for j in range(lo, hi):
                h_prevs[b * ld_out + j] = h_old[b * ld + j]
        if b >= finish:
            for j in range(lo, hi):
                h_n[b * ld_out + j] = h_new[b * ld + j]


cdef inline Py_ssize_t chunk_first_row(Py_ssize_t T, Py_ssize_t B,
                                       const Py_ssize_t* batch_sizes, bint up,
                                       Py_ssize_t s_chunk, Py_ssize_t n_chunk,
                                       Py_ssize_t off, Py_ssize_t* chunk_n) noexcept nogil:
    """Packed rows of the chunk of steps [s_chunk, s_chunk + n_chunk) in walking order:
    returns its first (lowest) row and sets ``chunk_n``; ``off`` is the walk's
    running row offset at the chunk's start (the rows of steps before a reverse
    walk's chunk lie below ``off``)."""
    if up:
        chunk_n[0] = rows_between(B, batch_sizes, s_chunk, s_chunk + n_chunk)
        return off
    chunk_n[0] = rows_between(B, batch_sizes, T - s_chunk - n_chunk, T - s_chunk)
    return off - chunk_n[0]


# ------------------------------------------------ recurrent products on packed weights

cdef inline floating* alloc_packed(const floating* like, Py_ssize_t rows,
                                   Py_ssize_t n) noexcept nogil:
    """Room for ``n`` packed weight elements when a sequence of ``rows`` packed rows
    repays packing; NULL otherwise, or if malloc fails: step_gemm then calls BLAS.

    Allocated once per kernel call, before the team starts (``like`` only picks
    the type); the caller hands it back with fastrnn_block_free after the team
    ends, for the next call to reuse (_blocks.h)."""
    if rows < PACK_MIN_ROWS or n <= 0:
        return NULL
    return <floating*>fastrnn_block_alloc(n * sizeof(floating))


cdef inline void pack_weights(const floating* w, bint by_rows, Py_ssize_t K,
                              Py_ssize_t n_gates, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                              floating* packed) noexcept nogil:
    """Pack this thread's columns {g*H + u : g < n_gates, j0 <= u < j1} of B for
    step_gemm (no-op when ``packed`` is NULL).  ``by_rows``: w is (n_gates*H, K),
    one row per column (C += A . w^T, the forward); else w is (K, n_gates*H)
    (C += A . w, the backward)."""
    if packed == NULL:
        return
    if floating is float:
        if by_rows:
            fastrnn_pack_f32(w, 1, K, K, n_gates, H, j0, j1, packed)
        else:
            fastrnn_pack_f32(w, n_gates * H, 1, K, n_gates, H, j0, j1, packed)
    else:
        if by_rows:
            fastrnn_pack_f64(w, 1, K, K, n_gates, H, j0, j1, packed)
        else:
            fastrnn_pack_f64(w, n_gates * H, 1, K, n_gates, H, j0, j1, packed)


cdef inline Py_ssize_t gate_packed_size(const floating* like, Py_ssize_t H,
                                       Py_ssize_t K) noexcept nogil:
    """Elements of one gate of H columns, depth K, packed whole (its last group
    padded): room for the gates packed before another's weights (the GRU's W_hn after
    W_hr and W_hz).  It depends on the dtype: float64 groups may be narrower than
    FASTRNN_GROUP, the unit the threads split by."""
    if floating is float:
        return fastrnn_gate_packed_size_f32(H, K)
    return fastrnn_gate_packed_size_f64(H, K)


cdef inline void pack_stacked(const floating* w_ih, Py_ssize_t I, const floating* w_hh,
                              Py_ssize_t K, Py_ssize_t n_gates, Py_ssize_t H, Py_ssize_t j0,
                              Py_ssize_t j1, floating* packed) noexcept nogil:
    """Pack this thread's columns of [W_ih W_hh]^T, depth I + K, for a step_gemm
    whose A rows are [x_t, h_{t-1}] (no-op when ``packed`` is NULL)."""
    if packed == NULL:
        return
    if floating is float:
        fastrnn_pack_stacked_f32(w_ih, I, w_hh, K, n_gates, H, j0, j1, packed)
    else:
        fastrnn_pack_stacked_f64(w_ih, I, w_hh, K, n_gates, H, j0, j1, packed)


cdef inline bint projection_panels(Py_ssize_t T, Py_ssize_t B, bint training) noexcept nogil:
    """Whether the input projection packs W_ih a panel at a time (project_inputs): where
    one chunk takes every step, each packed weight is used once, and a whole packed
    copy would only go to memory and back.  Measured against packing W_ih whole (two
    threads, T = 50, input = hidden, the two builds in alternating processes, best of
    3-5 rounds): inference at batch 1, LSTM(512) 0.93x the time, LSTM(1024) 0.94x,
    GRU(1024) 0.87x, RNN(256, 1024) 0.96x; LSTM(700) at batch 5 0.93x, GRU(256-1024)
    at batch 8 0.96-0.97x; training even (0.97-1.00x).  Several chunks reuse one
    packed copy instead."""
    return chunk_steps(T, B, training) >= T


cdef inline Py_ssize_t projection_packed_size(Py_ssize_t n_gates, Py_ssize_t H, Py_ssize_t I,
                                             bint panels, int nt) noexcept nogil:
    """Elements of W_ih (n_gates*H, I) packed for the input projection on the packed
    micro-kernel (project_inputs): all of it, or with ``panels`` one panel for each of
    the nt threads; 0 where BLAS projects.  With 16-column (AVX-512) groups the
    micro-kernel outruns the SGEMM of SciPy's OpenBLAS, which runs its AVX2 (Haswell)
    kernels on AMD's Zen 5; with 8-column groups it measured no faster, and BLAS keeps
    the job."""
    if FASTRNN_GROUP < 16:
        return 0
    if panels:
        return nt * fastrnn_panel_size(I)
    return fastrnn_packed_size(n_gates, H, I)


cdef inline void project_inputs(Py_ssize_t m, Py_ssize_t I, const floating* x,
                                const floating* w_ih, floating* packed_ih, bint panels,
                                Py_ssize_t n_gates, Py_ssize_t H, Py_ssize_t j0,
                                Py_ssize_t j1, floating* xp, Py_ssize_t ldc,
                                const floating* bias, int tid) noexcept nogil:
    """xp[:, g*H + u] = (x . W_ih^T)[:, g*H + u] + bias[g*H + u] over m rows, for this
    thread's units (bias NULL: none): with ``panels`` on its own panel of packed_ih,
    else on packed_ih packed whole by pack_weights (or through BLAS where packed_ih is
    NULL)."""
    if not panels or packed_ih == NULL:
        step_gemm(m, I, x, I, w_ih, True, packed_ih, n_gates, H, j0, j1, xp, ldc, False,
                  bias)
    elif floating is float:
        fastrnn_panel_gemm_f32(m, I, x, I, w_ih, n_gates, H, j0, j1, xp, ldc, False, bias,
                               packed_ih + tid * fastrnn_panel_size(I))
    else:
        fastrnn_panel_gemm_f64(m, I, x, I, w_ih, n_gates, H, j0, j1, xp, ldc, False, bias,
                               packed_ih + tid * fastrnn_panel_size(I))


cdef inline Py_ssize_t input_grad_packed_size(Py_ssize_t I, Py_ssize_t G) noexcept nogil:
    """Elements of W_ih (G, I) packed for input_grad; 0 where input_grad calls BLAS (more
    than DX_PACKED_MAX_INPUTS inputs, unless the groups are AVX-512's, as in
    projection_packed_size)."""
    if I <= DX_PACKED_MAX_INPUTS or FASTRNN_GROUP >= 16:
        return fastrnn_packed_size(1, I, G)
    return 0


cdef inline void input_grad(Py_ssize_t n_rows, Py_ssize_t I, Py_ssize_t G,
                            const floating* d, const floating* w_ih,
                            const floating* packed_ih, floating* dx, bint accumulate,
                            int tid, int nt) noexcept nogil:
    """dx (+)= d . W_ih over n_rows rows (d (n_rows, G), W_ih (G, I)), each thread its
    share of the rows: on packed_ih (W_ih packed by its columns, every thread having
    packed its own, then a barrier) when not NULL, else through BLAS."""
    cdef Py_ssize_t r0, r1
    split_rows(n_rows, tid, nt, &r0, &r1)
    if packed_ih != NULL:
        step_gemm(r1 - r0, G, d + r0 * G, G, w_ih, False, packed_ih, 1, I, 0, I,
                  dx + r0 * I, I, accumulate, NULL)
    else:
        gemm(False, False, r1 - r0, I, G, <floating>1, d + r0 * G, G, w_ih, I,
             <floating>1 if accumulate else <floating>0, dx + r0 * I, I)


cdef inline void step_gemm(Py_ssize_t m, Py_ssize_t K, const floating* a, Py_ssize_t lda,
                           const floating* w, bint by_rows, const floating* packed,
                           Py_ssize_t n_gates, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                           floating* c, Py_ssize_t ldc, bint accumulate,
                           const floating* bias) noexcept nogil:
    """C[:, g*H + u] (+)= (A . B)[:, g*H + u] for this thread's units, B as in
    pack_weights: the per-step recurrent product, on the packed copy of w when
    there is one, else through BLAS.  Unless ``accumulate``, C is overwritten with
    the product plus the row ``bias[g*H + u]`` (NULL: none)."""
    cdef Py_ssize_t g, r
    cdef floating beta = 1 if accumulate else 0
    if m <= 0 or j1 <= j0:
        return
    if packed != NULL:
        if floating is float:
            fastrnn_packed_gemm_f32(m, K, a, lda, packed, n_gates, H, j0, j1, c, ldc,
                                    accumulate, bias)
        else:
            fastrnn_packed_gemm_f64(m, K, a, lda, packed, n_gates, H, j0, j1, c, ldc,
                                    accumulate, bias)
        return
    if not accumulate and bias != NULL:
        # BLAS adds the product to the bias laid down first.
        for r in range(m):
            for g in range(n_gates):
                memcpy(c + r * ldc + g * H + j0, bias + g * H + j0,
                       (j1 - j0) * sizeof(floating))
        beta = 1
    if by_rows:
        gates_gemm(m, n_gates, H, j0, j1, K, a, lda, w, beta, c, ldc)
    else:
        for g in range(n_gates):
            gemm(False, False, m, j1 - j0, K, <floating>1, a, lda, w + g * H + j0,
                 n_gates * H, beta, c + g * H + j0, ldc)


cdef inline bint rows_product(Py_ssize_t B) noexcept nogil:
    """Whether a forward walk's per-step recurrent products should read the weights
    as the layer holds them (recurrent_gemm), leaving them unpacked."""
    return B <= ROW_GEMV_MAX_ROWS


cdef inline void recurrent_gemm(bint rows, Py_ssize_t m, Py_ssize_t K, const floating* a,
                                Py_ssize_t lda, const floating* w, const floating* packed,
                                Py_ssize_t n_gates, Py_ssize_t H, Py_ssize_t j0,
                                Py_ssize_t j1, floating* c, Py_ssize_t ldc,
                                bint accumulate) noexcept nogil:
    """step_gemm(by_rows=True), or with ``rows`` (rows_product) this thread's units of
    every gate straight from the row-major w (n_gates*H, K), m <= ROW_GEMV_MAX_ROWS."""
    cdef Py_ssize_t g
    if not rows:
        step_gemm(m, K, a, lda, w, True, packed, n_gates, H, j0, j1, c, ldc, accumulate,
                  NULL)
        return
    if m <= 0:
        return
    for g in range(n_gates):
        gemv_rows(w, K, K, a, lda, m, <floating*>NULL, c, ldc, g * H + j0, g * H + j1,
                  accumulate)
