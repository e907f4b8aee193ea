/* deepgrad's optional native kernels.
 *
 * An elementwise kernel fuses a chain of NumPy calls into one pass over memory. It performs
 * exactly the float operations of the NumPy code it stands in for, in the same order and at
 * the same precision, and is built with -ffp-contract=off (no fused multiply-adds), so the
 * results are the NumPy path's bit for bit; the tests compare the two with array_equal.
 * Transcendental functions stay NumPy's: the recurrent loops call NumPy's own tanh loop. The
 * exception is the LSTM's fused float32 loops of AVX2 builds (lstm_forward_fused_f32,
 * lstm_backward_fused_f32), with a tanh and GEMM tiles of their own. They, the convolutions and
 * batch normalization sum in their own order and equal the NumPy path to rounding.
 *
 * Every kernel comes in float32 (suffix _f32) and float64 (_f64). Strides are in elements.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#if defined(__x86_64__) && defined(__SSE2__)
#include <immintrin.h>
#endif

#define BLOCK 512  /* elements per block of the optimizer kernels */

/* Bit pattern test of the RNN gradient flush (deepgrad/ops/rnn.py: _Flush): zero a value whose
 * magnitude is below tiny/eps, i.e. whose biased exponent field is below (nmant + 1). Integer
 * ops only, so values near the subnormal range never reach the slow floating-point path. */
static inline float flush_f32(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    if ((b & 0x7f800000u) < (24u << 23)) b = 0;
    memcpy(&x, &b, 4);
    return x;
}

static inline double flush_f64(double x) {
    uint64_t b;
    memcpy(&b, &x, 8);
    if ((b & 0x7ff0000000000000ull) < (53ull << 52)) b = 0;
    memcpy(&x, &b, 8);
    return x;
}

/* NumPy's inner loop of a ufunc (deepgrad/_native/__init__.py: ufunc_loop): a kernel that calls
 * it makes the call NumPy would and gets NumPy's bits */
typedef void (*ufunc_loop_fn)(char **, const long *, const long *, void *);

/* a register of VL lanes, written with GCC's vector extensions (on AVX2 the compiler splits
 * each into two halves) */
typedef float vec_f32 __attribute__((vector_size(64)));
typedef double vec_f64 __attribute__((vector_size(64)));

/* integer lanes of the same width: bit masks and shuffle indices */
typedef int32_t lanes_f32 __attribute__((vector_size(64)));
typedef int64_t lanes_f64 __attribute__((vector_size(64)));

/* dst[c * ds + r] = src[r * ss + c] for r < rows, c < cols: square tiles of one register's
 * lanes transposed in registers (GCC's two-source shuffles), the edges element by element.
 * The LSTM's output kernel (h of 256 x 32 floats, transposed into rows 64 KB apart) took
 * 11 us a step element by element, 6 us by tiles. */
#if defined(__GNUC__) && !defined(__clang__)
typedef float uvec_f32 __attribute__((vector_size(64), aligned(4)));
typedef double uvec_f64 __attribute__((vector_size(64), aligned(8)));
/* Stage d of the tile transpose: between rows i and i + d, swap bit d of the row and the column
 * index where they differ (over all d, (r, c) goes to (c, r)). Lane c of the new row i is lane
 * LO(c) of [row i, row i + d], lane c of the new row i + d is lane HI(c). The masks must be
 * constants for the shuffles to become single permutes, hence the stages spelled out below. */
#define LO(d, c, VL) (((c) & (d)) ? (VL) + (c) - (d) : (c))
#define HI(d, c, VL) (((c) & (d)) ? (VL) + (c) : (c) + (d))
#define MASK8(F, d, VL) F(d, 0, VL), F(d, 1, VL), F(d, 2, VL), F(d, 3, VL), F(d, 4, VL),      \
                        F(d, 5, VL), F(d, 6, VL), F(d, 7, VL)
#define MASK16(F, d) MASK8(F, d, 16), F(d, 8, 16), F(d, 9, 16), F(d, 10, 16), F(d, 11, 16),     \
                     F(d, 12, 16), F(d, 13, 16), F(d, 14, 16), F(d, 15, 16)
#define STAGE(S, VL, d, lo, hi)                                                                 \
    for (int i = 0; i < VL; i++)                                                                \
        if (!(i & (d))) {                                                                       \
            vec_##S a = r[i], b = r[i + (d)];                                                   \
            r[i] = __builtin_shuffle(a, b, (lanes_##S){lo});                                    \
            r[i + (d)] = __builtin_shuffle(a, b, (lanes_##S){hi});                              \
        }
static inline void transpose_tile_f32(const float *restrict src, long ss, float *restrict dst,
                                      long ds) {
    vec_f32 r[16];
    for (int i = 0; i < 16; i++) r[i] = *(const uvec_f32 *)(src + i * ss);
    STAGE(f32, 16, 1, MASK16(LO, 1), MASK16(HI, 1))
    STAGE(f32, 16, 2, MASK16(LO, 2), MASK16(HI, 2))
    STAGE(f32, 16, 4, MASK16(LO, 4), MASK16(HI, 4))
    STAGE(f32, 16, 8, MASK16(LO, 8), MASK16(HI, 8))
    for (int i = 0; i < 16; i++) *(uvec_f32 *)(dst + i * ds) = r[i];
}
static inline void transpose_tile_f64(const double *restrict src, long ss, double *restrict dst,
                                      long ds) {
    vec_f64 r[8];
    for (int i = 0; i < 8; i++) r[i] = *(const uvec_f64 *)(src + i * ss);
    STAGE(f64, 8, 1, MASK8(LO, 1, 8), MASK8(HI, 1, 8))
    STAGE(f64, 8, 2, MASK8(LO, 2, 8), MASK8(HI, 2, 8))
    STAGE(f64, 8, 4, MASK8(LO, 4, 8), MASK8(HI, 4, 8))
    for (int i = 0; i < 8; i++) *(uvec_f64 *)(dst + i * ds) = r[i];
}
#define TRANSPOSE_TILE(T, S, VL)
#else /* other compilers: the same tiles element by element */
#define TRANSPOSE_TILE(T, S, VL)                                                                \
static inline void transpose_tile_##S(const T *restrict src, long ss, T *restrict dst,          \
                                      long ds) {                                                \
    for (int i = 0; i < VL; i++)                                                                \
        for (int c = 0; c < VL; c++) dst[c * ds + i] = src[i * ss + c];                         \
}
#endif

#define TRANSPOSE(T, S, VL)                                                                     \
TRANSPOSE_TILE(T, S, VL)                                                                        \
void transpose_##S(const T *restrict src, long ss, T *restrict dst, long ds, long rows,         \
                    long cols) {                                                                \
    long rt = rows - rows % VL, ct = cols - cols % VL;                                          \
    for (long r0 = 0; r0 < rt; r0 += VL)                                                        \
        for (long c0 = 0; c0 < ct; c0 += VL)                                                    \
            transpose_tile_##S(src + r0 * ss + c0, ss, dst + c0 * ds + r0, ds);                 \
    for (long r = 0; r < rt; r++)                                                               \
        for (long c = ct; c < cols; c++) dst[c * ds + r] = src[r * ss + c];                     \
    for (long r = rt; r < rows; r++)                                                            \
        for (long c = 0; c < cols; c++) dst[c * ds + r] = src[r * ss + c];                      \
}                                                                                               \
                                                                                                \
/* transpose_ of `count` blocks, block b's at src + b * sb and dst + b * db (the inputs of a    \
 * recurrent layer's time steps into columns: deepgrad/ops/rnn.py, _inputs_to_columns) */       \
void transpose_blocks_##S(const T *src, long sb, long ss, T *dst, long db, long ds, long rows,  \
                          long cols, long count) {                                              \
    for (long b = 0; b < count; b++)                                                            \
        transpose_##S(src + b * sb, ss, dst + b * db, ds, rows, cols);                          \
}

TRANSPOSE(float, f32, 16)
TRANSPOSE(double, f64, 8)

/* ---- parts run at once ---------------------------------------------------------------------
 * A kernel over many independent elements splits them into parts, one per thread. The parts run
 * on the parallel loop deepgrad/_native/parallel.py hands in (parallel.cpp: oneTBB's
 * parallel_for, on the worker threads MKL's TBB layer keeps, so no thread of ours competes with
 * MKL's for a core), or one after another on the calling thread when there is none. Every
 * element gets the same operations whichever part it falls in: the same bits on any number of
 * threads. */
typedef void (*part_fn)(void *ctx, long part);
typedef void (*parallel_fn)(part_fn fn, void *ctx, long parts);
static parallel_fn parallel_loop = 0;
static long parallel_parts = 1;

/* Below this many elements a kernel runs whole on the calling thread: handing a part to another
 * thread costs a few microseconds, and more when that thread has gone to sleep. */
#define PARALLEL_MIN 32768

/* loop: the parallel loop, or NULL to run parts in turn; parts: how many a large kernel makes */
void set_parallel(void *loop, long parts) {
    parallel_loop = (parallel_fn)loop;
    parallel_parts = parts > 1 ? parts : 1;
}

/* PARALLEL_MIN, for deepgrad/_native/parallel.py and the tests */
long parallel_min(void) { return PARALLEL_MIN; }

static inline long parts_for(long n) { return n >= PARALLEL_MIN ? parallel_parts : 1; }

static void run_parts(part_fn fn, void *ctx, long parts) {
    if (parts > 1 && parallel_loop) {
        parallel_loop(fn, ctx, parts);
        return;
    }
    for (long i = 0; i < parts; i++) fn(ctx, i);
}

/* Where part i of n items split into parts starts (part `parts` starts at n): on a multiple of
 * align items, so that parts do not share cache lines. */
static inline long part_start(long n, long parts, long i, long align) {
    return i >= parts ? n : n / parts * i / align * align;
}

#define KERNELS(T, S)                                                                           \
                                                                                                \
/* LSTM forward, after tanh of the pre-activations a (4H, N), gates (i, f, o, g) with i, f, o  \
 * pre-halved: sigmoid = 0.5 * tanh + 0.5 for i, f, o, then the cell c = f * c_prev + i * g. */ \
static void lstm_gates_rows_##S(T *restrict a, long gs, const T *restrict c_prev,               \
                                T *restrict c, long lo, long hi) {                              \
    for (int b = 0; b < 3; b++)                                                                 \
        for (long k = b * gs + lo; k < b * gs + hi; k++) a[k] = a[k] * (T)0.5 + (T)0.5;         \
    const T *i = a, *f = a + gs, *g = a + 3 * gs;                                               \
    for (long k = lo; k < hi; k++) {                                                            \
        T fc = f[k] * c_prev[k];                                                                \
        T ig = i[k] * g[k];                                                                     \
        c[k] = fc + ig;                                                                         \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* (lstm_gates_rows does it for elements [lo, hi) of each block, the blocks gs apart) */        \
void lstm_gates_##S(T *a, const T *c_prev, T *c, long hn) {                                     \
    lstm_gates_rows_##S(a, hn, c_prev, c, 0, hn);                                               \
}                                                                                               \
                                                                                                \
/* LSTM forward, after tanh of the cell: h = o * tanh(c) into h (H rows of N, row stride ldh: \
 * the next step's block of the state columns), and its transpose into the layer's output     \
 * rows out[n, j] (row stride out_sn). */                                                      \
void lstm_output_##S(const T *restrict o, const T *restrict tc, T *restrict h, long ldh,        \
                     T *restrict out, long H, long N, long out_sn) {                            \
    for (long j = 0; j < H; j++)                                                                \
        for (long n = 0; n < N; n++) h[j * ldh + n] = o[j * N + n] * tc[j * N + n];             \
    transpose_##S(h, ldh, out, out_sn, H, N);                                                   \
}                                                                                               \
                                                                                                \
/* dh (H, N) = the carried gradient (dh_rec[j*rj + n*rn]) + the step's output gradient      \
 * (gout[n*gn + j*gj], an (N, H) array: a transpose, by tiles where its rows are contiguous) */\
static inline void carried_plus_output_##S(const T *dh_rec, long rj, long rn, const T *gout,    \
                                           long gn, long gj, T *restrict dh, long H, long N) {  \
    if (gj == 1) {                                                                              \
        transpose_##S(gout, gn, dh, N, N, H);                                                   \
        for (long j = 0; j < H; j++)                                                            \
            for (long n = 0; n < N; n++)                                                        \
                dh[j * N + n] = dh_rec[j * rj + n * rn] + dh[j * N + n];                        \
    } else {                                                                                    \
        for (long j = 0; j < H; j++)                                                            \
            for (long n = 0; n < N; n++)                                                        \
                dh[j * N + n] = dh_rec[j * rj + n * rn] + gout[n * gn + j * gj];                \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* One step of LSTM backpropagation through time, before the GEMM with W_hh.                   \
 * In: a (4H, N) the gate activations (i, f, o, g), overwritten with the gradients of their    \
 * pre-activations; tc = tanh(c) and c_prev (H, N); the incoming dh = dh_rec[j*rj + n*rn] +    \
 * gout[n*gn + j*gj], gathered first into the scratch dh (H, N) (gout is the (N, H) output    \
 * gradient: a transpose); dc (H, N) the carried cell gradient, updated in place. With flush, \
 * dh_rec (then contiguous) and dc are first flushed like the NumPy path's carry after its    \
 * GEMM. */                                                                                     \
static void lstm_backward_rows_##S(T *restrict a, long gs, const T *restrict tc,                \
                                   const T *restrict c_prev, T *restrict dh_rec, long rj,       \
                                   long rn, const T *restrict gout, long gn, long gj,           \
                                   T *restrict dc, T *restrict dh, long H, long N, int flush) { \
    long hn = H * N;                                                                            \
    T *ai = a, *af = a + gs, *ao = a + 2 * gs, *ag = a + 3 * gs;                                \
    if (flush) {                                                                                \
        for (long k = 0; k < hn; k++) dh_rec[k] = flush_##S(dh_rec[k]);                         \
        for (long k = 0; k < hn; k++) dc[k] = flush_##S(dc[k]);                                 \
    }                                                                                           \
    carried_plus_output_##S(dh_rec, rj, rn, gout, gn, gj, dh, H, N);                           \
    for (long k = 0; k < hn; k++) {                                                             \
        T dk = dh[k];                                                                           \
        T i = ai[k], f = af[k], o = ao[k], g = ag[k], t = tc[k];                                \
        T sdi = i - i * i, sdf = f - f * f, sdo = o - o * o;                                    \
        T q = dk * o;                                                                           \
        T d = dc[k] + q;                                                                        \
        q = q * t;                                                                              \
        q = q * t;                                                                              \
        d = d - q;                                                                              \
        ao[k] = (dk * t) * sdo;                                                                 \
        T qi = d * g, qf = d * c_prev[k];                                                       \
        T qg = (T)1.0 - g * g;                                                                  \
        qg = qg * i;                                                                            \
        ag[k] = qg * d;                                                                         \
        dc[k] = d * f;                                                                          \
        ai[k] = qi * sdi;                                                                       \
        af[k] = qf * sdf;                                                                       \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* (lstm_backward_rows runs it on H rows of a larger step: the gate blocks are gs apart) */     \
void lstm_backward_step_##S(T *a, const T *tc, const T *c_prev, T *dh_rec, long rj, long rn,    \
                            const T *gout, long gn, long gj, T *dc, T *dh, long H, long N,      \
                            int flush) {                                                        \
    lstm_backward_rows_##S(a, H * N, tc, c_prev, dh_rec, rj, rn, gout, gn, gj, dc, dh, H, N,    \
                           flush);                                                              \
}                                                                                               \
                                                                                                \
/* Activation gradients from the saved output y, in one pass (deepgrad/ops/elementwise.py). */  \
static void tanh_backward_one_##S(const T *restrict y, const T *restrict g, T *restrict out,    \
                                  long n) {                                                     \
    for (long k = 0; k < n; k++) out[k] = g[k] * ((T)1 - y[k] * y[k]);                         \
}                                                                                               \
                                                                                                \
static void sigmoid_backward_one_##S(const T *restrict y, const T *restrict g, T *restrict out, \
                                     long n) {                                                  \
    for (long k = 0; k < n; k++) out[k] = ((T)1 - y[k]) * y[k] * g[k];                          \
}                                                                                               \
                                                                                                \
/* max(x, 0) as np.maximum gives it: NaN stays NaN, -0.0 becomes 0.0. out may be x (a layer  \
 * activating its own output): each element is read before it is written. */                  \
static void relu_forward_one_##S(const T *x, T *out, long n) {                                  \
    _Pragma("GCC ivdep")                                                                        \
    for (long k = 0; k < n; k++) out[k] = x[k] <= 0 ? (T)0 : x[k];                              \
}                                                                                               \
                                                                                                \
/* y = max(y + b, 0) in place over rows of y (rows, cols), b (cols): a Linear's bias and the  \
 * ReLU after it in one pass, the same bits as the add and then relu_forward */                \
static void bias_relu_one_##S(T *restrict y, const T *restrict b, long rows, long cols) {       \
    for (long r = 0; r < rows; r++) {                                                           \
        T *yr = y + r * cols;                                                                   \
        for (long k = 0; k < cols; k++) {                                                       \
            T v = yr[k] + b[k];                                                                 \
            yr[k] = v <= 0 ? (T)0 : v;                                                          \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* the mask y > 0 as 1 or 0, times g: NaN in y passes no gradient; g * 0 keeps its sign. (The   \
 * mask as a statement of its own: written inside the product, GCC 12 left the loop scalar      \
 * for AVX2, 4x slower.) */                                                                     \
static void relu_backward_one_##S(const T *restrict y, const T *restrict g, T *restrict out,    \
                                  long n) {                                                     \
    for (long k = 0; k < n; k++) {                                                              \
        T mask = y[k] > 0 ? (T)1 : (T)0;                                                        \
        out[k] = g[k] * mask;                                                                   \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* The optimizer kernels work through the parameters in blocks that stay in L1, with one      \
 * simple (vectorisable) loop per NumPy call of the reference update and the branches outside \
 * the loops. */                                                                                \
                                                                                                \
/* SGD (deepgrad/optim/sgd.py: SGD._update with l2_gradient). flags: 1 weight decay,           \
 * 2 maximize, 4 momentum, 8 first step (fresh buffer), 16 dampening, 32 nesterov. */           \
static void sgd_update_one_##S(T *restrict p, const T *restrict d, T *restrict buf, long n,     \
                               T neg_lr, T wd, T mom, T damp, int flags) {                      \
    int has_wd = flags & 1, maximize = flags & 2, has_mom = flags & 4, fresh = flags & 8;       \
    int has_damp = flags & 16, nesterov = flags & 32;                                           \
    T g[BLOCK];                                                                                 \
    for (long s = 0; s < n; s += BLOCK) {                                                       \
        long m = n - s < BLOCK ? n - s : BLOCK;                                                 \
        T *ps = p + s;                                                                          \
        const T *ds = d + s, *gp = ds;                                                          \
        if (has_wd && maximize) {                                                               \
            for (long k = 0; k < m; k++) g[k] = ps[k] * wd - ds[k];                             \
            gp = g;                                                                             \
        } else if (has_wd) {                                                                    \
            for (long k = 0; k < m; k++) g[k] = ds[k] + ps[k] * wd;                             \
            gp = g;                                                                             \
        } else if (maximize) {                                                                  \
            for (long k = 0; k < m; k++) g[k] = -ds[k];                                         \
            gp = g;                                                                             \
        }                                                                                       \
        if (has_mom) {                                                                          \
            T *bs = buf + s;                                                                    \
            if (fresh)                                                                          \
                for (long k = 0; k < m; k++) bs[k] = gp[k];                                     \
            else if (has_damp)                                                                  \
                for (long k = 0; k < m; k++) bs[k] = bs[k] * mom + gp[k] * damp;               \
            else                                                                                \
                for (long k = 0; k < m; k++) bs[k] = bs[k] * mom + gp[k];                       \
            if (nesterov) {                                                                     \
                for (long k = 0; k < m; k++) g[k] = gp[k] + bs[k] * mom;                        \
                gp = g;                                                                         \
            } else {                                                                            \
                gp = bs;                                                                        \
            }                                                                                   \
        }                                                                                       \
        for (long k = 0; k < m; k++) ps[k] = ps[k] + gp[k] * neg_lr;                            \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* Adam / AdamW (deepgrad/optim/adam.py: Adam._update). flags: 1 weight decay, 2 decoupled,    \
 * 4 maximize, 8 amsgrad (vmax given), 16 lerp form m + w1*(d - m) (else d - w1*(d - m)). */   \
static void adam_update_one_##S(T *restrict p, const T *restrict d, T *restrict m,              \
                                T *restrict v, T *restrict vmax, long n, T w1, T b2, T omb2,    \
                                T eps, T wd, T decay, T bc2_sqrt, T neg_step, int flags) {      \
    int has_wd = flags & 1, decoupled = flags & 2, maximize = flags & 4, ams = flags & 8;       \
    int lerp_add = flags & 16;                                                                  \
    T g[BLOCK], u[BLOCK];                                                                       \
    for (long s = 0; s < n; s += BLOCK) {                                                       \
        long c = n - s < BLOCK ? n - s : BLOCK;                                                 \
        T *ps = p + s, *ms = m + s, *vs = v + s;                                                \
        const T *ds = d + s, *gp = ds, *vp = vs;                                                \
        if (has_wd && decoupled) {                                                              \
            for (long k = 0; k < c; k++) ps[k] = ps[k] * decay;                                 \
        } else if (has_wd && maximize) {                                                        \
            for (long k = 0; k < c; k++) g[k] = ps[k] * wd - ds[k];                             \
            gp = g;                                                                             \
        } else if (has_wd) {                                                                    \
            for (long k = 0; k < c; k++) g[k] = ds[k] + ps[k] * wd;                             \
            gp = g;                                                                             \
        }                                                                                       \
        if (maximize && gp == ds) {                                                             \
            for (long k = 0; k < c; k++) g[k] = -ds[k];                                         \
            gp = g;                                                                             \
        }                                                                                       \
        for (long k = 0; k < c; k++) u[k] = (gp[k] - ms[k]) * w1;                               \
        if (lerp_add)                                                                           \
            for (long k = 0; k < c; k++) ms[k] = ms[k] + u[k];                                  \
        else                                                                                    \
            for (long k = 0; k < c; k++) ms[k] = gp[k] - u[k];                                  \
        for (long k = 0; k < c; k++) vs[k] = vs[k] * b2 + (gp[k] * omb2) * gp[k];              \
        if (ams) {                                                                              \
            T *xs = vmax + s;                                                                   \
            /* np.maximum: a NaN on either side wins, ties give the second */                   \
            for (long k = 0; k < c; k++)                                                        \
                xs[k] = (xs[k] != xs[k] || xs[k] > vs[k]) ? xs[k] : vs[k];                      \
            vp = xs;                                                                            \
        }                                                                                       \
        for (long k = 0; k < c; k++)                                                            \
            ps[k] = ps[k] + (ms[k] / (sqrt##S##_(vp[k]) / bc2_sqrt + eps)) * neg_step;          \
    }                                                                                           \
}

static inline float sqrtf32_(float x) { return sqrtf(x); }
static inline double sqrtf64_(double x) { return sqrt(x); }

KERNELS(float, f32)
KERNELS(double, f64)

/* ---- the elementwise kernels above, split into parts (run_parts); their ranges start on whole
 * cache lines (16 floats) and the optimizers' on whole blocks, so each part's loops are the
 * same as in a single pass */
#define PARTED(T, S)                                                                            \
typedef struct { const T *a, *b; T *out; long n, parts; } pair_ctx_##S;                         \
                                                                                                \
/* kernel(a + lo, b + lo, out + lo, hi - lo) for the part's range [lo, hi) */                   \
static void pair_range_##S(void *ctx, long i, long *lo, long *hi) {                             \
    pair_ctx_##S *c = ctx;                                                                      \
    *lo = part_start(c->n, c->parts, i, 16);                                                    \
    *hi = part_start(c->n, c->parts, i + 1, 16);                                                \
}                                                                                               \
                                                                                                \
PAIR_KERNEL(T, S, tanh_backward)                                                                \
PAIR_KERNEL(T, S, sigmoid_backward)                                                             \
PAIR_KERNEL(T, S, relu_backward)                                                                \
                                                                                                \
static void relu_forward_part_##S(void *ctx, long i) {                                          \
    pair_ctx_##S *c = ctx;                                                                      \
    long lo, hi;                                                                                \
    pair_range_##S(ctx, i, &lo, &hi);                                                           \
    relu_forward_one_##S(c->a + lo, c->out + lo, hi - lo);                                      \
}                                                                                               \
                                                                                                \
void relu_forward_##S(const T *x, T *out, long n) {                                             \
    pair_ctx_##S c = {x, 0, out, n, parts_for(n)};                                              \
    run_parts(relu_forward_part_##S, &c, c.parts);                                              \
}                                                                                               \
                                                                                                \
/* the rows split: y (rows, cols) and the bias b */                                             \
typedef struct { T *y; const T *b; long rows, cols, parts; } rows_ctx_##S;                      \
                                                                                                \
ROWS_KERNEL(T, S, bias_relu)                                                                    \
                                                                                                \
typedef struct { T *p; const T *d; T *buf; long n; T neg_lr, wd, mom, damp; int flags;          \
                 long parts; } sgd_ctx_##S;                                                     \
                                                                                                \
static void sgd_update_part_##S(void *ctx, long i) {                                            \
    sgd_ctx_##S *c = ctx;                                                                       \
    long lo = part_start(c->n, c->parts, i, BLOCK), hi = part_start(c->n, c->parts, i + 1, BLOCK); \
    sgd_update_one_##S(c->p + lo, c->d + lo, c->buf ? c->buf + lo : 0, hi - lo, c->neg_lr,      \
                       c->wd, c->mom, c->damp, c->flags);                                       \
}                                                                                               \
                                                                                                \
void sgd_update_##S(T *p, const T *d, T *buf, long n, T neg_lr, T wd, T mom, T damp,            \
                    int flags) {                                                                \
    sgd_ctx_##S c = {p, d, buf, n, neg_lr, wd, mom, damp, flags, parts_for(n)};                 \
    run_parts(sgd_update_part_##S, &c, c.parts);                                                \
}                                                                                               \
                                                                                                \
typedef struct { T *p; const T *d; T *m, *v, *vmax; long n; T w1, b2, omb2, eps, wd, decay,     \
                 bc2_sqrt, neg_step; int flags; long parts; } adam_ctx_##S;                     \
                                                                                                \
static void adam_update_part_##S(void *ctx, long i) {                                           \
    adam_ctx_##S *c = ctx;                                                                      \
    long lo = part_start(c->n, c->parts, i, BLOCK), hi = part_start(c->n, c->parts, i + 1, BLOCK); \
    adam_update_one_##S(c->p + lo, c->d + lo, c->m + lo, c->v + lo, c->vmax ? c->vmax + lo : 0, \
                        hi - lo, c->w1, c->b2, c->omb2, c->eps, c->wd, c->decay, c->bc2_sqrt,   \
                        c->neg_step, c->flags);                                                 \
}                                                                                               \
                                                                                                \
void adam_update_##S(T *p, const T *d, T *m, T *v, T *vmax, long n, T w1, T b2, T omb2, T eps,  \
                     T wd, T decay, T bc2_sqrt, T neg_step, int flags) {                        \
    adam_ctx_##S c = {p, d, m, v, vmax, n, w1, b2, omb2, eps, wd, decay, bc2_sqrt, neg_step,    \
                      flags, parts_for(n)};                                                     \
    run_parts(adam_update_part_##S, &c, c.parts);                                               \
}

/* kernel(y, b, rows, cols) over parts of the rows (rows_ctx, PARTED) */
#define ROWS_KERNEL(T, S, name)                                                                 \
static void name##_part_##S(void *ctx, long i) {                                                \
    rows_ctx_##S *c = ctx;                                                                      \
    long lo = part_start(c->rows, c->parts, i, 1), hi = part_start(c->rows, c->parts, i + 1, 1); \
    name##_one_##S(c->y + lo * c->cols, c->b, hi - lo, c->cols);                                \
}                                                                                               \
                                                                                                \
void name##_##S(T *y, const T *b, long rows, long cols) {                                       \
    rows_ctx_##S c = {y, b, rows, cols, parts_for(rows * cols)};                                \
    run_parts(name##_part_##S, &c, c.parts);                                                    \
}

/* kernel(y, g, out, n) over parts */
#define PAIR_KERNEL(T, S, name)                                                                 \
static void name##_part_##S(void *ctx, long i) {                                                \
    pair_ctx_##S *c = ctx;                                                                      \
    long lo, hi;                                                                                \
    pair_range_##S(ctx, i, &lo, &hi);                                                           \
    name##_one_##S(c->a + lo, c->b + lo, c->out + lo, hi - lo);                                 \
}                                                                                               \
                                                                                                \
void name##_##S(const T *y, const T *g, T *out, long n) {                                       \
    pair_ctx_##S c = {y, g, out, n, parts_for(n)};                                              \
    run_parts(name##_part_##S, &c, c.parts);                                                    \
}

PARTED(float, f32)
PARTED(double, f64)

/* ---- convolution ----------------------------------------------------------------------------
 * Direct 2-d convolution for layers with few input channels times taps (LeNet's), where a GEMM
 * over a patch matrix has too few rows for BLAS to run well. Unlike the kernels above these
 * sum in their own order, so results match the NumPy path to rounding, not bit for bit; they
 * may contract multiplies and adds into FMAs. */
#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")

/* The register blocks below are sized to the vector register file. With AVX-512 it holds 32
 * registers of 64 bytes; AVX2 (and NEON, 32 of 16 bytes) 16 of 32 bytes, and blocks sized for
 * AVX-512 then spill: on an AVX2-only machine (AMD EPYC, AVX-512 not exposed) LeNet-5's step
 * took 4x PyTorch's time with 64-byte vectors and AVX-512's blocks. */
#if defined(__AVX512F__)
#define CONV_BYTES 64
#define CONV_OB 8   /* output channels per register block (x 2 output rows) */
#define CONV_PX 12  /* output columns per register block with lanes over channels (x 2 rows) */
#define CONV_PX_STEPS 12, 10, 8, 4 /* block widths for a row's last columns, widest first */
#define TAP_REGS 25 /* tap sums the weight-gradient kernels hold in registers at once */
#define ROWS_R 4    /* output rows per block of the one-channel weight gradient */
#define WG_MR 12    /* rows of U per register block of the Winograd GEMM (x 2 vectors) */
#else
#define CONV_BYTES 32
#define CONV_OB 6
#define CONV_PX 6
#define CONV_PX_STEPS 6, 5, 4, 2
#define TAP_REGS 12
#define ROWS_R 2
#define WG_MR 6
#endif

/* a register of the convolutions: CONV_BYTES / sizeof(T) lanes, and integer lanes for masks */
typedef float cvec_f32 __attribute__((vector_size(CONV_BYTES)));
typedef double cvec_f64 __attribute__((vector_size(CONV_BYTES)));
typedef int32_t clanes_f32 __attribute__((vector_size(CONV_BYTES)));
typedef int64_t clanes_f64 __attribute__((vector_size(CONV_BYTES)));

/* deepgrad/ops/conv.py lays out operands for these: the lanes (weight-gradient channels padded
 * to whole vectors) and the block of output channels (the weight padded to whole blocks) */
long conv_vector_bytes(void) { return CONV_BYTES; }
long conv_channel_block(void) { return CONV_OB; }
/* the widest kernel row the weight-gradient kernels take: a pass holds at least one row's taps */
long conv_tap_registers(void) { return TAP_REGS; }


#define CONV_KERNELS(T, S, VL)                                                                  \
typedef struct {                                                                                \
    const T *xp; long N, C, Hp, Wp; const T *w; long O, kh, kw; const T *bias; T *y;            \
    long OH, OW, sh, sw, dh, dw, zt, zb;                                                        \
} conv_args_##S;                                                                                \
                                                                                                \
/* kw, sw and the block of output channels ob (at most CONV_OB) as arguments: called with     \
 * constants, the tap loop unrolls (LeNet's 5x5: 1.2x) and a block of 6 fits 6 channels */     \
static inline __attribute__((always_inline)) void conv_images_##S(                              \
        const conv_args_##S *a, long n0, long n1, long kw, long sw, int obk) {                  \
    const T *restrict xp = a->xp, *restrict w = a->w, *restrict bias = a->bias;                 \
    T *restrict y = a->y;                                                                       \
    long C = a->C, Hp = a->Hp, Wp = a->Wp, O = a->O, kh = a->kh;                                \
    long OH = a->OH, OW = a->OW, sh = a->sh, dh = a->dh, dw = a->dw;                            \
    long zt = a->zt, zb = Hp - a->zb; /* input rows outside [zt, zb) are zero padding */        \
    long wo = C * kh * kw; /* weight stride between output channels */                         \
    long rs = sh * Wp;     /* input stride between the block's two output rows */              \
    for (long n = n0; n < n1; n++)                                                              \
    for (long o0 = 0; o0 < O; o0 += obk)                                                        \
    for (long oy = 0; oy < OH; oy += 2)                                                         \
    for (long x0 = 0; x0 < OW; x0 += VL) {                                                      \
        /* two output rows per block: each weight broadcast feeds two FMAs, which keeps the   \
         * loads (one per FMA with a memory operand) from being the bottleneck; a second row  \
         * past the last is computed from the slack and dropped */                             \
        cvec_##S acc[CONV_OB], acc2[CONV_OB];                                                    \
        for (int b = 0; b < obk; b++) acc[b] = acc2[b] = (cvec_##S){0};                          \
        for (long c = 0; c < C; c++)                                                            \
        for (long i = 0; i < kh; i++) {                                                         \
            long r0 = oy * sh + i * dh;                                                         \
            if (r0 + sh < zt || r0 >= zb) continue; /* both rows of the pair are padding */     \
            const T *xr = xp + ((n * C + c) * Hp + r0) * Wp + x0 * sw;                          \
            const T *wr = w + (o0 * C + c) * kh * kw + i * kw;                                  \
            for (long j = 0; j < kw; j++) {                                                     \
                cvec_##S xv, xv2;                                                                \
                const T *xs = xr + j * dw;                                                      \
                if (sw == 1) {                                                                  \
                    memcpy(&xv, xs, sizeof xv);                                                 \
                    memcpy(&xv2, xs + rs, sizeof xv2);                                          \
                } else {                                                                        \
                    T tmp[VL], tmp2[VL];                                                        \
                    for (int l = 0; l < VL; l++) tmp[l] = xs[l * sw];                           \
                    for (int l = 0; l < VL; l++) tmp2[l] = xs[rs + l * sw];                     \
                    memcpy(&xv, tmp, sizeof xv);                                                \
                    memcpy(&xv2, tmp2, sizeof xv2);                                             \
                }                                                                               \
                for (int b = 0; b < obk; b++) {                                                 \
                    T wv = wr[b * wo + j];                                                      \
                    acc[b] += wv * xv;                                                          \
                    acc2[b] += wv * xv2;                                                        \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        long xl = OW - x0 < VL ? OW - x0 : VL;                                                  \
        long ob = O - o0 < obk ? O - o0 : obk;                                                  \
        for (long b = 0; b < ob; b++) {                                                         \
            T *yr = y + ((n * O + o0 + b) * OH + oy) * OW + x0;                                 \
            T out[VL];                                                                          \
            T bb = bias ? bias[o0 + b] : (T)0;                                                  \
            memcpy(out, &acc[b], sizeof out);                                                   \
            for (long l = 0; l < xl; l++) yr[l] = out[l] + bb;                                  \
            if (oy + 1 < OH) {                                                                  \
                memcpy(out, &acc2[b], sizeof out);                                              \
                for (long l = 0; l < xl; l++) yr[OW + l] = out[l] + bb;                         \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* The same convolution (stride and dilation 1) with lanes over output channels instead of    \
 * output columns, for layers whose output rows are short (LeNet's second layer: 16 channels  \
 * of 10 columns, so 10 of 16 lanes busy the other way). wpk (groups of VL channels, C, kh,    \
 * kw, VL), lanes past O zero. Register block: px output columns x two output rows, a vector  \
 * of VL channels each; every weight vector feeds 2*px FMAs whose inputs are broadcast from    \
 * memory. px is a constant at each call: the block then stays in registers. Columns past OW  \
 * (a block rounded up) and a second row past OH are computed from the row and its slack and  \
 * dropped. */                                                                                  \
static inline __attribute__((always_inline)) void conv_oc_block_##S(                            \
        const conv_args_##S *a, const T *restrict wpk, long n, long g, long oy, long x0,        \
        int px, long kw) {                                                                      \
    const T *restrict xp = a->xp, *restrict bias = a->bias;                                     \
    T *restrict y = a->y;                                                                       \
    long C = a->C, Hp = a->Hp, Wp = a->Wp, O = a->O, kh = a->kh;                                \
    long OH = a->OH, OW = a->OW, zt = a->zt, zb = Hp - a->zb;                                   \
    cvec_##S acc[CONV_PX], acc2[CONV_PX];                                                        \
    for (int p = 0; p < px; p++) acc[p] = acc2[p] = (cvec_##S){0};                               \
    for (long c = 0; c < C; c++)                                                                \
    for (long i = 0; i < kh; i++) {                                                             \
        if (oy + i + 1 < zt || oy + i >= zb) continue; /* both rows are padding */             \
        const T *xr = xp + ((n * C + c) * Hp + oy + i) * Wp + x0;                               \
        const T *wr = wpk + ((g * C + c) * kh + i) * kw * VL;                                   \
        for (long j = 0; j < kw; j++) {                                                         \
            cvec_##S wv;                                                                         \
            memcpy(&wv, wr + j * VL, sizeof wv);                                                \
            /* opaque pointers per tap: otherwise the compiler keeps the inputs shared by       \
             * neighbouring taps in registers, runs out of them and spills (0.6x) */            \
            const T *xj = xr + j, *xj2 = xr + Wp + j;                                           \
            __asm__("" : "+r"(xj), "+r"(xj2));                                                  \
            for (int p = 0; p < px; p++) acc[p] += xj[p] * wv;                                  \
            for (int p = 0; p < px; p++) acc2[p] += xj2[p] * wv;                                \
        }                                                                                       \
    }                                                                                           \
    long ol = O - g * VL < VL ? O - g * VL : VL;                                                \
    long pl = OW - x0 < px ? OW - x0 : px;                                                      \
    T out[VL];                                                                                  \
    for (int r = 0; r < 2 && oy + r < OH; r++)                                                  \
        for (long p = 0; p < pl; p++) {                                                         \
            memcpy(out, r ? &acc2[p] : &acc[p], sizeof out);                                    \
            T *yp = y + ((n * O + g * VL) * OH + oy + r) * OW + x0 + p;                         \
            for (long o = 0; o < ol; o++)                                                       \
                yp[o * OH * OW] = bias ? out[o] + bias[g * VL + o] : out[o];                    \
        }                                                                                       \
}                                                                                               \
                                                                                                \
static inline __attribute__((always_inline)) void conv_oc_images_kw_##S(                        \
        const conv_args_##S *a, const T *wpk, long n0, long n1, long kw) {                      \
    long groups = (a->O + VL - 1) / VL;                                                         \
    const int px[4] = {CONV_PX_STEPS};                                                          \
    for (long n = n0; n < n1; n++)                                                              \
    for (long g = 0; g < groups; g++)                                                           \
    for (long oy = 0; oy < a->OH; oy += 2)                                                      \
    for (long x0 = 0; x0 < a->OW; x0 += CONV_PX) {                                              \
        long rest = a->OW - x0;                                                                 \
        if (rest > px[1]) conv_oc_block_##S(a, wpk, n, g, oy, x0, px[0], kw);                   \
        else if (rest > px[2]) conv_oc_block_##S(a, wpk, n, g, oy, x0, px[1], kw);              \
        else if (rest > px[3]) conv_oc_block_##S(a, wpk, n, g, oy, x0, px[2], kw);              \
        else conv_oc_block_##S(a, wpk, n, g, oy, x0, px[3], kw);                                \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* kw a constant where it is 5 or 3: the tap loop unrolls */                                    \
static void conv_oc_images_##S(const conv_args_##S *a, const T *wpk, long n0, long n1) {        \
    if (a->kw == 5) conv_oc_images_kw_##S(a, wpk, n0, n1, 5);                                   \
    else if (a->kw == 3) conv_oc_images_kw_##S(a, wpk, n0, n1, 3);                              \
    else conv_oc_images_kw_##S(a, wpk, n0, n1, a->kw);                                          \
}                                                                                               \
                                                                                                \
/* lanes in use out of those computed, lanes over columns vs over channels, in 1/VL units */   \
static int conv_oc_better_##S(long O, long OW) {                                                \
    long oc = (O + VL - 1) / VL * VL, cols = (OW + VL - 1) / VL * VL;                           \
    return O * cols > OW * oc;                                                                  \
}                                                                                               \
                                                                                                \
/* y (N, O, OH, OW) = conv(xp, w) (+ bias), xp the zero-padded input (N, C, Hp, Wp) followed \
 * by at least sh*Wp + VL*sw elements of slack (read into lanes that are dropped), w (Opad, C, \
 * kh, kw) with Opad a multiple of CONV_OB (rows past O zero). Register block: CONV_OB output \
 * channels x VL output columns x two output rows. The top zt and bottom zb rows of each      \
 * padded image are zero: taps that meet only such rows are skipped (the input gradient, the  \
 * output gradient padded by kh - 1, skips a quarter of LeNet's). Where output rows are short \
 * the kernel above with lanes over channels runs instead. Images are independent: a large      \
 * batch splits into parts of whole images (run_parts), the same bits on any number of them.    \
 */                                                                                             \
typedef struct { const conv_args_##S *a; const T *wpk; long parts; } conv_job_##S;              \
static void conv_part_##S(void *ctx, long part) {                                               \
    const conv_job_##S *j = ctx;                                                                \
    const conv_args_##S *a = j->a;                                                              \
    long n0 = part_start(a->N, j->parts, part, 1), n1 = part_start(a->N, j->parts, part + 1, 1); \
    if (j->wpk) {                                                                               \
        conv_oc_images_##S(a, j->wpk, n0, n1);                                                  \
        return;                                                                                 \
    }                                                                                           \
    long O = a->O, kw = a->kw, sw = a->sw;                                                      \
    /* blocks of 6 channels where they leave fewer idle than blocks of CONV_OB (LeNet's 6) */   \
    int six = (O + 5) / 6 * 6 < (O + CONV_OB - 1) / CONV_OB * CONV_OB;                          \
    if (kw == 5 && sw == 1 && six)                                                              \
        conv_images_##S(a, n0, n1, 5, 1, 6);                                                    \
    else if (kw == 5 && sw == 1)                                                                \
        conv_images_##S(a, n0, n1, 5, 1, CONV_OB);                                              \
    else if (kw == 3 && sw == 1 && six)                                                         \
        conv_images_##S(a, n0, n1, 3, 1, 6);                                                    \
    else if (kw == 3 && sw == 1)                                                                \
        conv_images_##S(a, n0, n1, 3, 1, CONV_OB);                                              \
    else                                                                                        \
        conv_images_##S(a, n0, n1, kw, sw, CONV_OB);                                            \
}                                                                                               \
void conv2d_direct_##S(const T *xp, long N, long C, long Hp, long Wp, const T *w, long O,       \
                       long kh, long kw, const T *bias, T *y, long OH, long OW, long sh,        \
                       long sw, long dh, long dw, long zt, long zb) {                           \
    conv_args_##S a = {xp, N, C, Hp, Wp, w, O, kh, kw, bias, y, OH, OW, sh, sw, dh, dw, zt, zb}; \
    T *wpk = 0;                                                                                 \
    if (sh == 1 && sw == 1 && dh == 1 && dw == 1 && conv_oc_better_##S(O, OW)) {                \
        long groups = (O + VL - 1) / VL, taps = C * kh * kw;                                    \
        wpk = malloc(sizeof(T) * groups * taps * VL);                                           \
        if (wpk)                                                                                \
            for (long g = 0; g < groups; g++)                                                   \
                for (long t = 0; t < taps; t++)                                                 \
                    for (long l = 0; l < VL; l++)                                               \
                        wpk[(g * taps + t) * VL + l] = g * VL + l < O ? w[(g * VL + l) * taps + t] \
                                                                      : (T)0;                   \
    }                                                                                           \
    long parts = parts_for(N * O * OH * OW);                                                    \
    conv_job_##S job = {&a, wpk, parts < N ? parts : N};                                        \
    run_parts(conv_part_##S, &job, job.parts);                                                  \
    free(wpk);                                                                                  \
}                                                                                               \
                                                                                                \
/* Weight gradient of a convolution, lanes over output channels: gw (C*kh*kw, Opad) with      \
 * gw[c,i,j][o] = sum over n, oy, ox of gyt[n,oy,ox][o] * xp[n, c, oy*sh + i*dh, ox*sw + j*dw] \
 * from gyt, the output gradient pixel-major (N, OH, OW, Opad) with Opad a multiple of VL      \
 * (lanes past O zero), and the padded input xp (N, C, Hp, Wp). Four output pixels per pass   \
 * share each accumulator's load and store. */                                                 \
/* Stride 1, no dilation, kh and kw constants (5x5, 3x3): the accumulators of one input         \
 * channel's taps for VL output channels stay in registers over all images and pixels; each     \
 * pixel's gradient vector feeds a FMA per tap whose input is broadcast from memory. The taps   \
 * go in passes of whole kernel rows, at most TAP_REGS at a time (AVX-512: all 25 of a 5x5      \
 * in one pass; AVX2: two rows a pass). */                                                      \
static inline __attribute__((always_inline)) void wgrad_taps_pass_##S(                          \
        const T *restrict xp, long N, long C, long Hp, long Wp, const T *restrict gyt,          \
        long Opad, long OH, long OW, long kh, long kw, long o0, long c, long i0, int rows,      \
        T *restrict gw) {                                                                       \
    cvec_##S acc[TAP_REGS];                                                                     \
    for (int t = 0; t < rows * kw; t++) acc[t] = (cvec_##S){0};                                 \
    for (long n = 0; n < N; n++)                                                                \
    for (long oy = 0; oy < OH; oy++) {                                                          \
        const T *grow = gyt + ((n * OH + oy) * OW) * Opad + o0;                                 \
        const T *xr = xp + ((n * C + c) * Hp + oy + i0) * Wp;                                   \
        for (long ox = 0; ox < OW; ox++) {                                                      \
            cvec_##S gv;                                                                        \
            memcpy(&gv, grow + ox * Opad, sizeof gv);                                           \
            for (int i = 0; i < rows; i++) {                                                    \
                const T *xi = xr + i * Wp + ox;                                                 \
                __asm__("" : "+r"(xi)); /* as in conv_oc_block: no spills */                    \
                for (long j = 0; j < kw; j++) acc[i * kw + j] += gv * xi[j];                    \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    for (long t = 0; t < rows * kw; t++)                                                        \
        memcpy(gw + (c * kh * kw + i0 * kw + t) * Opad + o0, &acc[t], sizeof acc[t]);           \
}                                                                                               \
/* pairs [q0, q1) of (a vector of output channels, an input channel), each summed alone */      \
static inline __attribute__((always_inline)) void wgrad_taps_##S(                               \
        const T *restrict xp, long N, long C, long Hp, long Wp, const T *restrict gyt,          \
        long Opad, long OH, long OW, long kh, long kw, long q0, long q1, T *restrict gw) {      \
    const int step = TAP_REGS / kw < kh ? TAP_REGS / kw : kh; /* kernel rows per pass */        \
    for (long q = q0; q < q1; q++)                                                              \
        _Pragma("GCC unroll 8")                                                                 \
        for (long i0 = 0; i0 < kh; i0 += step)                                                  \
            wgrad_taps_pass_##S(xp, N, C, Hp, Wp, gyt, Opad, OH, OW, kh, kw, q / C * VL, q % C, \
                                i0, kh - i0 < step ? kh - i0 : step, gw);                       \
}                                                                                               \
typedef struct {                                                                                \
    const T *xp; long N, C, Hp, Wp; const T *gyt; long Opad, OH, OW, kw; T *gw; long parts;     \
} wgrad_job_##S;                                                                                \
static void wgrad_taps_part_##S(void *ctx, long part) {                                         \
    const wgrad_job_##S *j = ctx;                                                               \
    long pairs = j->Opad / VL * j->C;                                                           \
    long q0 = part_start(pairs, j->parts, part, 1);                                             \
    long q1 = part_start(pairs, j->parts, part + 1, 1);                                         \
    if (j->kw == 5)                                                                             \
        wgrad_taps_##S(j->xp, j->N, j->C, j->Hp, j->Wp, j->gyt, j->Opad, j->OH, j->OW, 5, 5,    \
                       q0, q1, j->gw);                                                          \
    else                                                                                        \
        wgrad_taps_##S(j->xp, j->N, j->C, j->Hp, j->Wp, j->gyt, j->Opad, j->OH, j->OW, 3, 3,    \
                       q0, q1, j->gw);                                                          \
}                                                                                               \
                                                                                                \
void conv2d_weight_grad_##S(const T *restrict xp, long N, long C, long Hp, long Wp,            \
                            const T *restrict gyt, long Opad, long OH, long OW, long kh,        \
                            long kw, long sh, long sw, long dh, long dw, T *restrict gw) {      \
    long taps = C * kh * kw;                                                                    \
    if (sh == 1 && sw == 1 && dh == 1 && dw == 1 && kh == kw && (kw == 5 || kw == 3)) {         \
        /* parts of whole (channel vector, input channel) pairs: the same sums in any split */  \
        long pairs = Opad / VL * C, parts = parts_for(N * OH * OW * Opad * kh);                 \
        wgrad_job_##S job = {xp, N, C, Hp, Wp, gyt, Opad, OH, OW, kw, gw,                       \
                             parts < pairs ? parts : pairs};                                    \
        run_parts(wgrad_taps_part_##S, &job, job.parts);                                        \
        return;                                                                                 \
    }                                                                                           \
    for (long k = 0; k < taps * Opad; k++) gw[k] = 0;                                           \
    for (long o0 = 0; o0 < Opad; o0 += VL)                                                      \
    for (long n = 0; n < N; n++)                                                                \
    for (long oy = 0; oy < OH; oy++) {                                                          \
        const T *grow = gyt + ((n * OH + oy) * OW) * Opad + o0;                                 \
        long ox = 0;                                                                            \
        for (; ox + 4 <= OW; ox += 4) {                                                         \
            cvec_##S g0, g1, g2, g3;                                                             \
            memcpy(&g0, grow + (ox + 0) * Opad, sizeof g0);                                     \
            memcpy(&g1, grow + (ox + 1) * Opad, sizeof g1);                                     \
            memcpy(&g2, grow + (ox + 2) * Opad, sizeof g2);                                     \
            memcpy(&g3, grow + (ox + 3) * Opad, sizeof g3);                                     \
            for (long c = 0; c < C; c++)                                                        \
            for (long i = 0; i < kh; i++) {                                                     \
                const T *xr = xp + ((n * C + c) * Hp + oy * sh + i * dh) * Wp + ox * sw;        \
                T *ar = gw + ((c * kh + i) * kw) * Opad + o0;                                   \
                for (long j = 0; j < kw; j++) {                                                 \
                    const T *xs = xr + j * dw;                                                  \
                    cvec_##S acc;                                                                \
                    memcpy(&acc, ar + j * Opad, sizeof acc);                                    \
                    acc += g0 * xs[0];                                                          \
                    acc += g1 * xs[sw];                                                         \
                    acc += g2 * xs[2 * sw];                                                     \
                    acc += g3 * xs[3 * sw];                                                     \
                    memcpy(ar + j * Opad, &acc, sizeof acc);                                    \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        for (; ox < OW; ox++) {                                                                 \
            cvec_##S g0;                                                                         \
            memcpy(&g0, grow + ox * Opad, sizeof g0);                                           \
            for (long c = 0; c < C; c++)                                                        \
            for (long i = 0; i < kh; i++) {                                                     \
                const T *xr = xp + ((n * C + c) * Hp + oy * sh + i * dh) * Wp + ox * sw;        \
                T *ar = gw + ((c * kh + i) * kw) * Opad + o0;                                   \
                for (long j = 0; j < kw; j++) {                                                 \
                    cvec_##S acc;                                                                \
                    memcpy(&acc, ar + j * Opad, sizeof acc);                                    \
                    acc += g0 * xr[j * dw];                                                     \
                    memcpy(ar + j * Opad, &acc, sizeof acc);                                    \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
}

/* Weight gradient of a one-channel convolution (LeNet's first layer: 6 output channels, too
 * few for AVX-512's lanes over them), stride 1, no dilation, with lanes along the output rows:
 * gw[o, i, j] = sum over n, y, x of gy[n, o, y, x] * xq[n, y + i, x + j]. A register block
 * holds the accumulators of one output channel's taps over all images and rows, in passes of
 * whole kernel rows (at most TAP_REGS taps a pass, so kw <= TAP_REGS: conv_tap_registers),
 * and output channels go in parts (run_parts); each sum is totalled across its lanes at the
 * end. gy (N, O, OH, OW) and xq,
 * the padded input (N, Hq, Wq) as the forward left it, followed by at least VL elements of
 * slack: a row's last, partial block of columns reads up to VL - 1 values past its row
 * (masked off). Reading both in place instead of re-laying them padded to whole vectors:
 * LeNet's first layer at batch 64 0.30 vs 0.49 ms. */
#define WGRAD_ROWS(T, S, VL)                                                                    \
/* rows [y0, y0 + R) of image n for output channel o, columns [x0, x0 + VL), into the tap    \
 * accumulators acc: the gy vectors of the R rows are loaded once, then each input row vector  \
 * of the block's reach (R + kh - 1 rows, kw offsets) is loaded once and feeds every tap it    \
 * meets. In a last, partial block (xl < VL columns) a bit mask zeroes the lanes past the      \
 * columns in both gy and the input, which read past their rows (the next row, or the slack   \
 * after the input): 0 * 0 adds nothing even where such a value is inf or NaN. The very last   \
 * gy row is read value by value, as nothing follows it. */                                     \
static inline __attribute__((always_inline)) void wgrad_rows_cols_##S(                          \
        const T *restrict xq, long Hq, long Wq, const T *restrict gy, const T *gy_end, long O,  \
        long OH, long OW, long kh, long kw, long n, long o, long y0, int R, long x0,            \
        int partial, long xl, clanes_##S keep, long i0, int rows, cvec_##S *acc) {              \
    cvec_##S gv[ROWS_R];                                                                         \
    for (int yy = 0; yy < R; yy++) {                                                            \
        const T *g = gy + ((n * O + o) * OH + y0 + yy) * OW + x0;                               \
        if (partial && g + VL > gy_end) {                                                       \
            T part[VL] = {0};                                                                   \
            for (long l = 0; l < xl; l++) part[l] = g[l];                                       \
            memcpy(&gv[yy], part, sizeof gv[yy]);                                               \
        } else {                                                                                \
            memcpy(&gv[yy], g, sizeof gv[yy]);                                                  \
            if (partial) gv[yy] = (cvec_##S)((clanes_##S)gv[yy] & keep);                        \
        }                                                                                       \
    }                                                                                           \
    _Pragma("GCC unroll 16")                                                                    \
    for (long r = i0; r < i0 + R + rows - 1; r++) {                                             \
        const T *xr = xq + (n * Hq + y0 + r) * Wq + x0;                                         \
        __asm__("" : "+r"(xr)); /* loads stay loads: no spilled copies across rows */          \
        _Pragma("GCC unroll 8")                                                                 \
        for (long j = 0; j < kw; j++) {                                                         \
            cvec_##S xv;                                                                         \
            memcpy(&xv, xr + j, sizeof xv);                                                     \
            if (partial) xv = (cvec_##S)((clanes_##S)xv & keep);                                \
            _Pragma("GCC unroll 8")                                                             \
            for (int yy = 0; yy < R; yy++) {                                                    \
                long i = r - yy;                                                                \
                if (i >= i0 && i < i0 + rows) acc[(i - i0) * kw + j] += gv[yy] * xv;            \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
static inline __attribute__((always_inline)) void wgrad_rows_block_##S(                         \
        const T *restrict xq, long Hq, long Wq, const T *restrict gy, const T *gy_end, long O,  \
        long OH, long OW, long kh, long kw, long n, long o, long y0, int R, clanes_##S keep,    \
        long i0, int rows, cvec_##S *acc) {                                                     \
    long x0 = 0;                                                                                \
    for (; x0 + VL <= OW; x0 += VL)                                                             \
        wgrad_rows_cols_##S(xq, Hq, Wq, gy, gy_end, O, OH, OW, kh, kw, n, o, y0, R, x0, 0, VL,  \
                            keep, i0, rows, acc);                                               \
    if (x0 < OW)                                                                                \
        wgrad_rows_cols_##S(xq, Hq, Wq, gy, gy_end, O, OH, OW, kh, kw, n, o, y0, R, x0, 1,      \
                            OW - x0, keep, i0, rows, acc);                                      \
}                                                                                               \
/* the taps of kernel rows [i0, i0 + rows) of output channel o, summed over all images */       \
static inline __attribute__((always_inline)) void wgrad_rows_pass_##S(                          \
        const T *restrict xq, long N, long Hq, long Wq, const T *restrict gy, long O, long OH,  \
        long OW, long kh, long kw, long o, long i0, int rows, clanes_##S keep,                  \
        T *restrict gw) {                                                                       \
    const T *gy_end = gy + N * O * OH * OW;                                                     \
    cvec_##S acc[TAP_REGS];                                                                     \
    for (long t = 0; t < rows * kw; t++) acc[t] = (cvec_##S){0};                                \
    for (long n = 0; n < N; n++) {                                                              \
        long y = 0;                                                                             \
        for (; y + ROWS_R <= OH; y += ROWS_R)                                                   \
            wgrad_rows_block_##S(xq, Hq, Wq, gy, gy_end, O, OH, OW, kh, kw, n, o, y, ROWS_R,    \
                                 keep, i0, rows, acc);                                          \
        for (; y < OH; y++)                                                                     \
            wgrad_rows_block_##S(xq, Hq, Wq, gy, gy_end, O, OH, OW, kh, kw, n, o, y, 1, keep,   \
                                 i0, rows, acc);                                                \
    }                                                                                           \
    for (long t = 0; t < rows * kw; t++) {                                                      \
        T sum = 0;                                                                              \
        for (int l = 0; l < VL; l++) sum += acc[t][l];                                          \
        gw[o * kh * kw + i0 * kw + t] = sum;                                                    \
    }                                                                                           \
}                                                                                               \
static inline __attribute__((always_inline)) void wgrad_rows_##S(                               \
        const T *restrict xq, long N, long Hq, long Wq, const T *restrict gy, long O, long OH,  \
        long OW, long kh, long kw, long o0, long o1, T *restrict gw) {                          \
    clanes_##S keep; /* the lanes of a last, partial column block that hold columns */          \
    for (int l = 0; l < VL; l++) keep[l] = l < OW % VL ? -1 : 0;                                \
    const int step = TAP_REGS / kw < kh ? TAP_REGS / kw : kh; /* kernel rows per pass */        \
    for (long o = o0; o < o1; o++)                                                              \
        _Pragma("GCC unroll 8")                                                                 \
        for (long i0 = 0; i0 < kh; i0 += step)                                                  \
            wgrad_rows_pass_##S(xq, N, Hq, Wq, gy, O, OH, OW, kh, kw, o, i0,                    \
                                kh - i0 < step ? kh - i0 : step, keep, gw);                     \
}                                                                                               \
typedef struct {                                                                                \
    const T *xq; long N, Hq, Wq; const T *gy; long O, OH, OW, kh, kw; T *gw; long parts;        \
} wgrad_rows_job_##S;                                                                           \
static void wgrad_rows_part_##S(void *ctx, long part) {                                         \
    const wgrad_rows_job_##S *j = ctx;                                                          \
    long o0 = part_start(j->O, j->parts, part, 1), o1 = part_start(j->O, j->parts, part + 1, 1); \
    /* constant kernel sizes unroll the tap loops and keep the accumulators in registers */     \
    if (j->kh == 5 && j->kw == 5)                                                               \
        wgrad_rows_##S(j->xq, j->N, j->Hq, j->Wq, j->gy, j->O, j->OH, j->OW, 5, 5, o0, o1,      \
                       j->gw);                                                                  \
    else if (j->kh == 3 && j->kw == 3)                                                          \
        wgrad_rows_##S(j->xq, j->N, j->Hq, j->Wq, j->gy, j->O, j->OH, j->OW, 3, 3, o0, o1,      \
                       j->gw);                                                                  \
    else                                                                                        \
        wgrad_rows_##S(j->xq, j->N, j->Hq, j->Wq, j->gy, j->O, j->OH, j->OW, j->kh, j->kw, o0,  \
                       o1, j->gw);                                                              \
}                                                                                               \
/* output channels in parts, each summed alone: the same bits in any split */                   \
void conv2d_weight_grad_rows_##S(const T *xq, long N, long Hq, long Wq, const T *gy, long O,    \
                                 long OH, long OW, long kh, long kw, T *gw) {                   \
    long parts = parts_for(N * O * OH * OW * kh);                                               \
    wgrad_rows_job_##S job = {xq, N, Hq, Wq, gy, O, OH, OW, kh, kw, gw, parts < O ? parts : O}; \
    run_parts(wgrad_rows_part_##S, &job, job.parts);                                            \
}

/* The 16 GEMMs of the Winograd convolution, one thread: M[k] = U[k] @ V[k] for k < 16, U
 * (16, O, C), V (16, C, P), M (16, O, P), where MKL is not there to run them (the driver below
 * calls MKL, one thread per kernel thread, when the caller passes it). A BLAS's own threads
 * lose on these shapes (a reduction of only C, and 16 products per block of images) and, after
 * every call, keep spinning on the core our next transform wants. Register block: WG_MR rows
 * of U (packed, so a row's value is one broadcast) by two vectors of columns of V. */
#define WG_NT_CP 16 /* winograd_gemm_nt rounds V's rows up to a multiple of this */
#define WINOGRAD_GEMM(T, S, VL)                                                                 \
/* U (16, O, C) packed for winograd_gemm: per k, panels of WG_MR rows, column-major inside      \
 * (a panel's rows for one c are adjacent), rows past O zero; 16 * panels * WG_MR * C values */ \
static void winograd_pack_##S(const T *restrict U, long O, long C, T *restrict packed) {        \
    long panels = (O + WG_MR - 1) / WG_MR;                                                      \
    for (int k = 0; k < 16; k++) {                                                              \
        const T *u = U + k * O * C;                                                             \
        T *ap = packed + k * panels * WG_MR * C;                                                \
        for (long pn = 0; pn < panels; pn++)                                                    \
            for (long c = 0; c < C; c++)                                                        \
                for (long r = 0; r < WG_MR; r++) {                                              \
                    long o = pn * WG_MR + r;                                                    \
                    ap[(pn * C + c) * WG_MR + r] = o < O ? u[o * C + c] : (T)0;                 \
                }                                                                               \
    }                                                                                           \
}                                                                                               \
/* acc[r] = sum over k < K of a[k * WG_MR + r] * (the vector at b + k * ldb): one panel of      \
 * WG_MR packed rows times one vector of columns, the sums in registers */                      \
static inline __attribute__((always_inline)) void wg_panel_##S(                                 \
        const T *restrict a, const T *restrict b, long ldb, long K, cvec_##S acc[WG_MR]) {       \
    for (int r = 0; r < WG_MR; r++) acc[r] = (cvec_##S){0};                                      \
    for (long k = 0; k < K; k++) {                                                              \
        cvec_##S bv;                                                                             \
        memcpy(&bv, b + k * ldb, sizeof bv);                                                    \
        for (int r = 0; r < WG_MR; r++) acc[r] += a[k * WG_MR + r] * bv;                        \
    }                                                                                           \
}                                                                                               \
static void winograd_gemm_##S(const T *restrict packed, const T *restrict V, long O, long C,    \
                              long P, T *restrict M, T *restrict tail) {                        \
    long panels = (O + WG_MR - 1) / WG_MR;                                                      \
    for (int k = 0; k < 16; k++) {                                                              \
        const T *v = V + k * C * P;                                                             \
        const T *ap = packed + k * panels * WG_MR * C;                                          \
        T *m = M + k * O * P;                                                                   \
        long n0 = 0;                                                                            \
        for (; n0 + 2 * VL <= P; n0 += 2 * VL)                                                  \
            for (long pn = 0; pn < panels; pn++) {                                              \
                const T *a = ap + pn * C * WG_MR;                                               \
                cvec_##S acc0[WG_MR], acc1[WG_MR];                                               \
                for (int r = 0; r < WG_MR; r++) acc0[r] = acc1[r] = (cvec_##S){0};               \
                for (long c = 0; c < C; c++) {                                                  \
                    cvec_##S b0, b1;                                                             \
                    memcpy(&b0, v + c * P + n0, sizeof b0);                                     \
                    memcpy(&b1, v + c * P + n0 + VL, sizeof b1);                                \
                    for (int r = 0; r < WG_MR; r++) {                                           \
                        acc0[r] += a[c * WG_MR + r] * b0;                                       \
                        acc1[r] += a[c * WG_MR + r] * b1;                                       \
                    }                                                                           \
                }                                                                               \
                long rows = O - pn * WG_MR < WG_MR ? O - pn * WG_MR : WG_MR;                    \
                for (long r = 0; r < rows; r++) {                                               \
                    T *mr = m + (pn * WG_MR + r) * P + n0;                                      \
                    memcpy(mr, &acc0[r], sizeof acc0[r]);                                       \
                    memcpy(mr + VL, &acc1[r], sizeof acc1[r]);                                  \
                }                                                                               \
            }                                                                                   \
        /* the last columns, a vector at a time; a last partial one through a zero-padded       \
         * copy, so that every column gets the same operations wherever a block's columns       \
         * start (results do not depend on the blocks, or on the threads) */                    \
        for (; n0 < P; n0 += VL) {                                                              \
            long cols = P - n0 < VL ? P - n0 : VL;                                              \
            const T *b = v + n0;                                                                \
            long ldb = P;                                                                       \
            if (cols < VL) {                                                                    \
                for (long c = 0; c < C; c++) {                                                  \
                    for (long l = 0; l < VL; l++)                                               \
                        tail[c * VL + l] = l < cols ? v[c * P + n0 + l] : 0;                    \
                }                                                                               \
                b = tail;                                                                       \
                ldb = VL;                                                                       \
            }                                                                                   \
            for (long pn = 0; pn < panels; pn++) {                                              \
                cvec_##S acc0[WG_MR];                                                            \
                wg_panel_##S(ap + pn * C * WG_MR, b, ldb, C, acc0);                             \
                long rows = O - pn * WG_MR < WG_MR ? O - pn * WG_MR : WG_MR;                    \
                for (long r = 0; r < rows; r++) {                                               \
                    T out[VL];                                                                  \
                    memcpy(out, &acc0[r], sizeof out);                                          \
                    memcpy(m + (pn * WG_MR + r) * P + n0, out, cols * sizeof(T));               \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* acc[k] += Tg[k] @ V[k]^T for k < 16: Tg (16, O, P), V (16, C, P), acc (16, O, C); the weight \
 * gradient's 16 GEMMs, each a reduction over the P tiles. Per k, Tg is packed like U in        \
 * winograd_gemm and V transposed to (P, Cp), Cp = C rounded up to WG_NT_CP (zero columns past  \
 * C), so that the register block of winograd_gemm runs along the whole reduction and the sums  \
 * stay in registers (dot products along the tiles, summed across lanes after each block of     \
 * images, ran at half the speed). scratch: (O rounded up to WG_MR + Cp) * P. */               \
static void winograd_gemm_nt_##S(const T *restrict Tg, const T *restrict V, long O, long C,     \
                                 long P, T *restrict acc, T *restrict scratch) {                \
    long panels = (O + WG_MR - 1) / WG_MR, cp = (C + WG_NT_CP - 1) / WG_NT_CP * WG_NT_CP;       \
    T *ap = scratch, *vt = scratch + panels * WG_MR * P;                                        \
    for (int k = 0; k < 16; k++) {                                                              \
        const T *t = Tg + k * O * P, *v = V + k * C * P;                                        \
        T *out = acc + k * O * C;                                                               \
        for (long pn = 0; pn < panels; pn++) /* ap[pn][p][r] = t[pn * WG_MR + r][p] */          \
            for (long r = 0; r < WG_MR; r++) {                                                  \
                long o = pn * WG_MR + r;                                                        \
                T *dst = ap + pn * P * WG_MR + r;                                               \
                if (o < O)                                                                      \
                    for (long q = 0; q < P; q++) dst[q * WG_MR] = t[o * P + q];                 \
                else                                                                            \
                    for (long q = 0; q < P; q++) dst[q * WG_MR] = 0;                            \
            }                                                                                   \
        for (long q0 = 0; q0 < P; q0 += 16) /* vt[p][c] = v[c][p], in 16 x 16 tiles */          \
            for (long c0 = 0; c0 < cp; c0 += 16) {                                              \
                long q1 = q0 + 16 < P ? q0 + 16 : P;                                            \
                for (long c = c0; c < c0 + 16; c++)                                             \
                    for (long q = q0; q < q1; q++) vt[q * cp + c] = c < C ? v[c * P + q] : 0;   \
            }                                                                                   \
        for (long n0 = 0; n0 < cp; n0 += VL)                                                    \
            for (long pn = 0; pn < panels; pn++) {                                              \
                cvec_##S s[WG_MR];                                                               \
                wg_panel_##S(ap + pn * P * WG_MR, vt + n0, cp, P, s);                           \
                long rows = O - pn * WG_MR < WG_MR ? O - pn * WG_MR : WG_MR;                    \
                long cols = C - n0 < VL ? C - n0 : VL;                                          \
                for (long r = 0; r < rows; r++) {                                               \
                    T *o = out + (pn * WG_MR + r) * C + n0;                                     \
                    for (long l = 0; l < cols; l++) o[l] += s[r][l];                            \
                }                                                                               \
            }                                                                                   \
    }                                                                                           \
}

WINOGRAD_GEMM(float, f32, (CONV_BYTES / 4))
WINOGRAD_GEMM(double, f64, (CONV_BYTES / 8))
CONV_KERNELS(float, f32, (CONV_BYTES / 4))
WGRAD_ROWS(float, f32, (CONV_BYTES / 4))
WGRAD_ROWS(double, f64, (CONV_BYTES / 8))
CONV_KERNELS(double, f64, (CONV_BYTES / 8))
#pragma GCC pop_options

/* Short rows are copied and zeroed by loops here; without this GCC turns each loop back into a
 * memcpy or memset call (-ftree-loop-distribute-patterns), which costs more than the copy. */
#pragma GCC push_options
#pragma GCC optimize("no-tree-loop-distribute-patterns")

/* x (planes, H, W) zero-padded into out (planes, H + top + bottom, W + left + right), then
 * `slack` zeros, writing every output element once (a fill of the whole buffer and a copy of
 * the interior wrote the interior twice). Rows are short (LeNet's are 5-28 values), so they
 * are written by loops the compiler vectorises, not three libc calls each: that way the copies
 * of a LeNet step's three inputs took about 6% of the step. */
#define PAD2D(T, S)                                                                             \
void pad2d_##S(const T *restrict x, long planes, long H, long W, long top, long bottom,        \
               long left, long right, long slack, T *restrict out) {                            \
    long Wp = W + left + right;                                                                 \
    if (!(top | bottom | left | right)) {                                                      \
        memcpy(out, x, planes * H * W * sizeof(T));                                             \
        out += planes * H * W;                                                                  \
    } else {                                                                                    \
        for (long p = 0; p < planes; p++) {                                                     \
            const T *src = x + p * H * W;                                                       \
            memset(out, 0, top * Wp * sizeof(T));                                               \
            out += top * Wp;                                                                    \
            for (long r = 0; r < H; r++) {                                                      \
                const T *sr = src + r * W;                                                      \
                for (long k = 0; k < left; k++) out[k] = 0;                                     \
                for (long k = 0; k < W; k++) out[left + k] = sr[k];                             \
                for (long k = left + W; k < Wp; k++) out[k] = 0;                                \
                out += Wp;                                                                      \
            }                                                                                   \
            memset(out, 0, bottom * Wp * sizeof(T));                                            \
            out += bottom * Wp;                                                                 \
        }                                                                                       \
    }                                                                                           \
    memset(out, 0, slack * sizeof(T));                                                          \
}

PAD2D(float, f32)
PAD2D(double, f64)

/* Patch matrix cols (C*kh*kw, N*OH*OW), rows (c, i, j), columns (n, oy, ox), from the padded
 * input xp (N, C, Hp, Wp): a copy, exact. */
#define IM2COL(T, S)                                                                            \
void im2col_##S(const T *restrict xp, long N, long C, long Hp, long Wp, long kh, long kw,      \
                T *restrict cols, long OH, long OW, long sh, long sw, long dh, long dw) {       \
    long m = N * OH * OW;                                                                       \
    for (long c = 0; c < C; c++)                                                                \
    for (long i = 0; i < kh; i++)                                                               \
    for (long j = 0; j < kw; j++) {                                                             \
        T *row = cols + ((c * kh + i) * kw + j) * m;                                            \
        for (long n = 0; n < N; n++)                                                            \
        for (long oy = 0; oy < OH; oy++) {                                                      \
            const T *src = xp + ((n * C + c) * Hp + oy * sh + i * dh) * Wp + j * dw;            \
            T *dst = row + (n * OH + oy) * OW;                                                  \
            if (sw == 1)                                                                        \
                for (long ox = 0; ox < OW; ox++) dst[ox] = src[ox];                             \
            else                                                                                \
                for (long ox = 0; ox < OW; ox++) dst[ox] = src[ox * sw];                        \
        }                                                                                       \
    }                                                                                           \
}

IM2COL(float, f32)
IM2COL(double, f64)
#pragma GCC pop_options

/* ---- 2x2 pooling with stride 2 ------------------------------------------------------------
 * Windows that tile the input (H and W even), float32. Window row r of the whole batch (planes
 * one after the other) reads input rows 2r and 2r + 1 and writes output row r, so each kernel
 * is one loop over rows. Along a row, windows go in vectors of PV: the two input rows are
 * split into their even and odd columns (taps a, b from the top row, c, d from the bottom), and
 * a row's last vector starts at OW - PV, overlapping the one before (it writes the same values
 * again) instead of leaving a scalar tail. Rows narrower than PV windows (LeNet's second pooling
 * has 5) take vectors of 4, then scalars. The float operations are the NumPy path's
 * (deepgrad/ops/conv.py: MaxPoolNd, AvgPoolNd), so results are the same bits.
 * (Each window addressed through a table of offsets, as before, took 165 us on LeNet's first
 * pooling of a batch of 64, where these take about a third of that.) */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector) && __has_builtin(__builtin_convertvector)
#define POOL_VECTORS 1
#endif
#endif

/* max: the maximum folds the taps a, b, c, d like np.maximum (NaN wins, a tie gives the later
 * operand); the chosen tap is the first equal to the maximum, or the last NaN */
static inline float npmax1(float m, float v) { return (m != m || m > v) ? m : v; }

static inline void max_pool_window(const float *x0, const float *x1, long ox, float *y,
                                   uint8_t *choice) {
    float a = x0[2 * ox], b = x0[2 * ox + 1], c = x1[2 * ox], d = x1[2 * ox + 1];
    float m = npmax1(npmax1(npmax1(a, b), c), d);
    int first = a == m ? 0 : b == m ? 1 : c == m ? 2 : 3;
    int last_nan = d != d ? 3 : c != c ? 2 : b != b ? 1 : 0;
    y[ox] = m;
    choice[ox] = (uint8_t)(m != m ? last_nan : first);
}

/* gradient: each input element gets its window's gradient times 1 if it was the chosen tap,
 * else times 0 (so a NaN gradient reaches the whole window, as in NumPy) */
static inline void max_pool_grad_window(const float *gy, const uint8_t *choice, long ox,
                                        float *r0, float *r1) {
    float g = gy[ox];
    int c = choice[ox];
    r0[2 * ox] = g * (c == 0 ? 1.0f : 0.0f);
    r0[2 * ox + 1] = g * (c == 1 ? 1.0f : 0.0f);
    r1[2 * ox] = g * (c == 2 ? 1.0f : 0.0f);
    r1[2 * ox + 1] = g * (c == 3 ? 1.0f : 0.0f);
}

/* average: the two rows added first, then the two columns, then the division by 4 */
static inline void avg_pool_window(const float *x0, const float *x1, long ox, float *y) {
    float left = x0[2 * ox] + x1[2 * ox], right = x0[2 * ox + 1] + x1[2 * ox + 1];
    y[ox] = (left + right) / 4.0f;
}

#ifdef POOL_VECTORS
/* The same windows, V at a time from window ox: vf (V floats), vi (V ints), vb (V bytes), vw
 * (2V floats: a stretch of an input row) */
#define POOL_VEC(V)                                                                             \
typedef float vf##V __attribute__((vector_size(4 * V), aligned(4)));                            \
typedef int32_t vi##V __attribute__((vector_size(4 * V), aligned(4)));                          \
typedef uint8_t vb##V __attribute__((vector_size(V), aligned(1)));                              \
typedef float vw##V __attribute__((vector_size(8 * V), aligned(4)));                            \
                                                                                                \
static inline vf##V select##V(vi##V mask, vf##V yes, vf##V no) {                                \
    return (vf##V)(((vi##V)yes & mask) | ((vi##V)no & ~mask));                                  \
}                                                                                               \
static inline vi##V iselect##V(vi##V mask, vi##V yes, vi##V no) {                               \
    return (yes & mask) | (no & ~mask);                                                         \
}                                                                                               \
static inline vf##V npmax##V(vf##V m, vf##V v) { return select##V((m != m) | (m > v), m, v); }  \
static inline vf##V indicator##V(vi##V mask) { return select##V(mask, (vf##V){0} + 1.0f,       \
                                                                 (vf##V){0}); }                 \
                                                                                                \
static inline void max_pool_vec##V(const float *x0, const float *x1, long ox, float *y,         \
                                   uint8_t *choice) {                                           \
    vw##V top = *(const vw##V *)(x0 + 2 * ox), bottom = *(const vw##V *)(x1 + 2 * ox);         \
    vf##V a = __builtin_shufflevector(top, top, EVEN##V), b = __builtin_shufflevector(top, top, \
        ODD##V), c = __builtin_shufflevector(bottom, bottom, EVEN##V),                          \
        d = __builtin_shufflevector(bottom, bottom, ODD##V);                                    \
    vf##V m = npmax##V(npmax##V(npmax##V(a, b), c), d);                                         \
    vi##V k0 = (vi##V){0}, k1 = k0 + 1, k2 = k0 + 2, k3 = k0 + 3;                               \
    vi##V first = iselect##V(a == m, k0, iselect##V(b == m, k1, iselect##V(c == m, k2, k3)));   \
    vi##V last_nan = iselect##V(d != d, k3, iselect##V(c != c, k2, iselect##V(b != b, k1, k0))); \
    *(vf##V *)(y + ox) = m;                                                                     \
    *(vb##V *)(choice + ox) = __builtin_convertvector(iselect##V(m != m, last_nan, first),      \
                                                       vb##V);                                  \
}                                                                                               \
                                                                                                \
static inline void max_pool_grad_vec##V(const float *gy, const uint8_t *choice, long ox,        \
                                        float *r0, float *r1) {                                 \
    vf##V g = *(const vf##V *)(gy + ox);                                                        \
    vi##V c = __builtin_convertvector(*(const vb##V *)(choice + ox), vi##V);                    \
    vf##V t0 = g * indicator##V(c == 0), t1 = g * indicator##V(c == 1);                         \
    vf##V t2 = g * indicator##V(c == 2), t3 = g * indicator##V(c == 3);                         \
    *(vw##V *)(r0 + 2 * ox) = __builtin_shufflevector(t0, t1, ZIP##V);                          \
    *(vw##V *)(r1 + 2 * ox) = __builtin_shufflevector(t2, t3, ZIP##V);                          \
}                                                                                               \
                                                                                                \
static inline void avg_pool_vec##V(const float *x0, const float *x1, long ox, float *y) {       \
    vw##V top = *(const vw##V *)(x0 + 2 * ox), bottom = *(const vw##V *)(x1 + 2 * ox);         \
    vf##V left = __builtin_shufflevector(top, top, EVEN##V)                                     \
                 + __builtin_shufflevector(bottom, bottom, EVEN##V);                            \
    vf##V right = __builtin_shufflevector(top, top, ODD##V)                                     \
                  + __builtin_shufflevector(bottom, bottom, ODD##V);                            \
    *(vf##V *)(y + ox) = (left + right) / 4.0f;                                                 \
}                                                                                               \
                                                                                                \
static inline void avg_pool_grad_vec##V(const float *gy, long ox, float *r0, float *r1) {       \
    vf##V v = *(const vf##V *)(gy + ox) / 4.0f;                                                 \
    *(vw##V *)(r0 + 2 * ox) = __builtin_shufflevector(v, v, ZIP##V);                            \
    *(vw##V *)(r1 + 2 * ox) = __builtin_shufflevector(v, v, ZIP##V);                            \
}

#define EVEN4 0, 2, 4, 6
#define ODD4 1, 3, 5, 7
#define ZIP4 0, 4, 1, 5, 2, 6, 3, 7
#define EVEN8 0, 2, 4, 6, 8, 10, 12, 14
#define ODD8 1, 3, 5, 7, 9, 11, 13, 15
#define ZIP8 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15
POOL_VEC(4)
POOL_VEC(8)
#define PV 8
#endif

/* one row of OW windows: vectors of PV (the last one overlapping), else of 4, else scalars */
#ifdef POOL_VECTORS
#define POOL_ROW(OW, vec8, vec4, scalar)                                                        \
    if ((OW) >= PV) {                                                                           \
        for (long ox = 0; ox < (OW); ox += PV) vec8(ox < (OW) - PV ? ox : (OW) - PV);            \
    } else if ((OW) >= 4) {                                                                     \
        for (long ox = 0; ox < (OW); ox += 4) vec4(ox < (OW) - 4 ? ox : (OW) - 4);               \
    } else {                                                                                    \
        for (long ox = 0; ox < (OW); ox++) scalar(ox);                                          \
    }
#else
#define POOL_ROW(OW, vec8, vec4, scalar) for (long ox = 0; ox < (OW); ox++) scalar(ox);
#endif

void max_pool_2x2_f32(const float *restrict x, long planes, long H, long W, float *restrict y,
                      uint8_t *restrict choice) {
    long OW = W / 2;
    for (long r = 0; r < planes * (H / 2); r++) {
        const float *x0 = x + 2 * r * W, *x1 = x0 + W;
        float *yr = y + r * OW;
        uint8_t *cr = choice + r * OW;
#define MAX_SCALAR(ox) max_pool_window(x0, x1, ox, yr, cr)
#define MAX_VEC8(ox) max_pool_vec8(x0, x1, ox, yr, cr)
#define MAX_VEC4(ox) max_pool_vec4(x0, x1, ox, yr, cr)
        POOL_ROW(OW, MAX_VEC8, MAX_VEC4, MAX_SCALAR)
    }
}

void max_pool_2x2_backward_f32(const float *restrict gy, const uint8_t *restrict choice,
                               long planes, long H, long W, float *restrict gx) {
    long OW = W / 2;
    for (long r = 0; r < planes * (H / 2); r++) {
        const float *gr = gy + r * OW;
        const uint8_t *cr = choice + r * OW;
        float *r0 = gx + 2 * r * W, *r1 = r0 + W;
#define MAXG_SCALAR(ox) max_pool_grad_window(gr, cr, ox, r0, r1)
#define MAXG_VEC8(ox) max_pool_grad_vec8(gr, cr, ox, r0, r1)
#define MAXG_VEC4(ox) max_pool_grad_vec4(gr, cr, ox, r0, r1)
        POOL_ROW(OW, MAXG_VEC8, MAXG_VEC4, MAXG_SCALAR)
    }
}

void avg_pool_2x2_f32(const float *restrict x, long planes, long H, long W, float *restrict y) {
    long OW = W / 2;
    for (long r = 0; r < planes * (H / 2); r++) {
        const float *x0 = x + 2 * r * W, *x1 = x0 + W;
        float *yr = y + r * OW;
#define AVG_SCALAR(ox) avg_pool_window(x0, x1, ox, yr)
#define AVG_VEC8(ox) avg_pool_vec8(x0, x1, ox, yr)
#define AVG_VEC4(ox) avg_pool_vec4(x0, x1, ox, yr)
        POOL_ROW(OW, AVG_VEC8, AVG_VEC4, AVG_SCALAR)
    }
}

/* its gradient: every element of a window gets the window's gradient over 4 */
static inline void avg_pool_grad_window(const float *gy, long ox, float *r0, float *r1) {
    float v = gy[ox] / 4.0f;
    r0[2 * ox] = r0[2 * ox + 1] = r1[2 * ox] = r1[2 * ox + 1] = v;
}

void avg_pool_2x2_backward_f32(const float *restrict gy, long planes, long H, long W,
                               float *restrict gx) {
    long OW = W / 2;
    for (long r = 0; r < planes * (H / 2); r++) {
        const float *gr = gy + r * OW;
        float *r0 = gx + 2 * r * W, *r1 = r0 + W;
#define AVGG_SCALAR(ox) avg_pool_grad_window(gr, ox, r0, r1)
#define AVGG_VEC8(ox) avg_pool_grad_vec8(gr, ox, r0, r1)
#define AVGG_VEC4(ox) avg_pool_grad_vec4(gr, ox, r0, r1)
        POOL_ROW(OW, AVGG_VEC8, AVGG_VEC4, AVGG_SCALAR)
    }
}

/* ---- Winograd F(2x2, 3x3) convolution --------------------------------------------------------
 * (Lavin & Gray, "Fast algorithms for convolutional neural networks", 2016.) A 3x3 stride-1
 * convolution computes each 2x2 block of outputs from a 4x4 tile d of its input as
 * A^T [(G w G^T) . (B^T d B)] A, with 16 multiplies per input channel instead of 36: the
 * transformed weight U = G w G^T (16, O, C) times the transformed tiles V (16, C, P) is 16
 * GEMMs, one per position of the 4x4 transform, over all P tiles. The weight gradient is the
 * correlation of each 4x4 input tile with the 2x2 block of output gradients over it, the same
 * algorithm with the roles of G and A swapped: gw = G^T [sum over tiles (A gy A^T) . V] G, so
 * the input tiles' transform serves both. The transforms are additions and subtractions; the
 * GEMMs are winograd_gemm and winograd_gemm_nt above, and winograd_conv and
 * winograd_weight_grad below run the whole batch. Results equal the direct convolution's to
 * rounding. (16, rows, P) arrays are plane-major. */

/* Layout: a plane's tiles are (ty, tx) for tx in [0, tw], a row of tiles followed by one
 * dummy tile (zero in V and Tg, dropped from y), so that tile (ty, tx + 1) and tile row ty + 1
 * sit at fixed distances (1 and W1 = tw + 1) in every array: the transforms are then long
 * unit-stride loops over a whole plane, which vectorise. (Per tile, 16 scattered stores ran 7x
 * slower; per row of tiles, the loop overheads of short rows dominated.) The dummy tiles cost
 * the GEMMs 1/(tw + 1) more work. A block of n_img images has P = n_img * th * W1 tiles. */

/* the zero-padded plane xc (Hs, Ws) by parity of row and column: q[2a + b][ty][k] =            \
 * xc[2ty + a - top][2k + b - left] for ty in [0, th], k in [0, tw], zero outside xc */         \
#define WINOGRAD(T, S)                                                                          \
static void winograd_split_##S(const T *restrict xc, long Hs, long Ws, long top, long left,     \
                               long th, long tw, T *restrict q) {                               \
    long W1 = tw + 1, size = (th + 1) * W1;                                                     \
    for (long r2 = 0; r2 < 2 * (th + 1); r2++) {                                                \
        long r = r2 - top;                                                                      \
        T *dst = q + 2 * (r2 & 1) * size + (r2 >> 1) * W1;                                      \
        for (int b = 0; b < 2; b++, dst += size) {                                              \
            /* k runs over [k0, k1) where column 2k + b - left lies inside the row */           \
            long k0 = (left - b + 1) / 2, k1 = (Ws + left - b + 1) / 2;                         \
            if (k0 < 0) k0 = 0;                                                                 \
            if (k1 > W1) k1 = W1;                                                               \
            if (r < 0 || r >= Hs || k1 < k0) k0 = k1 = W1;                                      \
            const T *src = xc + r * Ws + b - left;                                              \
            for (long k = 0; k < k0; k++) dst[k] = 0;                                           \
            for (long k = k0; k < k1; k++) dst[k] = src[2 * k];                                 \
            for (long k = k1; k < W1; k++) dst[k] = 0;                                          \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* the transforms' inner loops, as functions so that restrict tells the compiler the rows       \
 * do not overlap (without it, the loops ran scalar behind a failed alias check: 8x slower) */  \
/* B^T on four inputs d = (r0[f], r1[f], r0[f + step], r1[f + step]) at each f: the rows of     \
 * a tile (step W1, the next row of tiles) or its columns (step 1, the next tile) */            \
static inline void winograd_bt_##S(const T *restrict r0, const T *restrict r1, long step,       \
                                   long L, T *restrict t0, T *restrict t1, T *restrict t2,      \
                                   T *restrict t3) {                                            \
    for (long f = 0; f < L; f++) {                                                              \
        T d0 = r0[f], d1 = r1[f], d2 = r0[f + step], d3 = r1[f + step];                         \
        t0[f] = d0 - d2; t1[f] = d1 + d2; t2[f] = d2 - d1; t3[f] = d1 - d3;                     \
    }                                                                                           \
}                                                                                               \
static inline void winograd_a_##S(const T *restrict p, const T *restrict r, long L,             \
                                  T *restrict t0, T *restrict t1, T *restrict t2,               \
                                  T *restrict t3) {                                             \
    for (long f = 0; f < L; f++) {                                                              \
        t0[f] = p[f]; t1[f] = p[f] + r[f]; t2[f] = p[f] - r[f]; t3[f] = -r[f];                  \
    }                                                                                           \
}                                                                                               \
/* rows (a + s*c, b + s*d) for s = 1 or -1, or (-c, -d) for s = 0 */                            \
static inline void winograd_rows_##S(const T *restrict a, const T *restrict b,                  \
                                     const T *restrict c, const T *restrict d, int s, long L,   \
                                     T *restrict p, T *restrict r) {                            \
    if (s > 0)                                                                                  \
        for (long f = 0; f < L; f++) { p[f] = a[f] + c[f]; r[f] = b[f] + d[f]; }                \
    else if (s < 0)                                                                             \
        for (long f = 0; f < L; f++) { p[f] = a[f] - c[f]; r[f] = b[f] - d[f]; }                \
    else                                                                                        \
        for (long f = 0; f < L; f++) { p[f] = -c[f]; r[f] = -d[f]; }                            \
}                                                                                               \
/* V (16, C, P) = B^T d B for every tile of x (n_img, C, Hs, Ws), contiguous: tile (ty, tx)     \
 * covers rows 2*ty - top .. +3 and columns 2*tx - left .. +3, zero outside x. */               \
static void winograd_input_##S(const T *restrict x, long n_img, long C, long Hs, long Ws,       \
                               long top, long left, long th, long tw, T *restrict V) {          \
    long W1 = tw + 1, L = th * W1, P = n_img * L, plane = C * P, size = (th + 1) * W1;          \
    T *q = malloc((4 * size + 8 * (L + 1)) * sizeof(T));                                        \
    if (!q) return;                                                                             \
    T *t = q + 4 * size;                                                                        \
    const T *ee = q, *eo = q + size, *oe = q + 2 * size, *oo = q + 3 * size;                    \
    T *te[4] = {t, t + (L + 1), t + 2 * (L + 1), t + 3 * (L + 1)};                              \
    T *to[4] = {t + 4 * (L + 1), t + 5 * (L + 1), t + 6 * (L + 1), t + 7 * (L + 1)};            \
    for (long n = 0; n < n_img; n++)                                                            \
    for (long c = 0; c < C; c++) {                                                              \
        winograd_split_##S(x + (n * C + c) * Hs * Ws, Hs, Ws, top, left, th, tw, q);       \
        /* B^T d on the rows: rows 2ty, 2ty + 1, 2ty + 2, 2ty + 3 of the even columns are       \
         * ee[f], oe[f], ee[f + W1], oe[f + W1] at f = ty * W1 + k; likewise the odd ones */    \
        winograd_bt_##S(ee, oe, W1, L, te[0], te[1], te[2], te[3]);                             \
        winograd_bt_##S(eo, oo, W1, L, to[0], to[1], to[2], to[3]);                             \
        for (int i = 0; i < 4; i++) te[i][L] = to[i][L] = 0;                                    \
        /* (B^T d) B on the columns: tile f's are te[f], to[f], te[f + 1], to[f + 1] */         \
        T *v = V + c * P + n * L;                                                               \
        for (int i = 0; i < 4; i++) {                                                           \
            T *v0 = v + (4 * i) * plane, *v1 = v0 + plane, *v2 = v1 + plane, *v3 = v2 + plane;  \
            winograd_bt_##S(te[i], to[i], 1, L, v0, v1, v2, v3);                                \
            for (long f = tw; f < L; f += W1) v0[f] = v1[f] = v2[f] = v3[f] = 0;                \
        }                                                                                       \
    }                                                                                           \
    free(q);                                                                                    \
}                                                                                               \
                                                                                                \
/* y (n_img, O, OH, OW) = A^T m A (+ bias) for every tile of M (16, O, P), m its 4x4 values;    \
 * outputs past OH or OW (half tiles) are dropped. */                                           \
static void winograd_output_##S(const T *restrict M, long O, long n_img, long th, long tw,      \
                                long OH, long OW, const T *restrict bias, T *restrict y) {      \
    long W1 = tw + 1, L = th * W1, P = n_img * L, plane = O * P;                                \
    T *buf = malloc(4 * L * sizeof(T));                                                         \
    if (!buf) return;                                                                           \
    T *ye0 = buf, *yo0 = buf + L, *ye1 = buf + 2 * L, *yo1 = buf + 3 * L;                       \
    for (long n = 0; n < n_img; n++)                                                            \
    for (long o = 0; o < O; o++) {                                                              \
        T b = bias ? bias[o] : (T)0;                                                            \
        const T *m = M + o * P + n * L;                                                         \
        for (long f = 0; f < L; f++) {                                                          \
            T m0 = m[f], m1 = m[plane + f], m2 = m[2 * plane + f], m3 = m[3 * plane + f];       \
            T m4 = m[4 * plane + f], m5 = m[5 * plane + f], m6 = m[6 * plane + f];              \
            T m7 = m[7 * plane + f], m8 = m[8 * plane + f], m9 = m[9 * plane + f];              \
            T m10 = m[10 * plane + f], m11 = m[11 * plane + f], m12 = m[12 * plane + f];        \
            T m13 = m[13 * plane + f], m14 = m[14 * plane + f], m15 = m[15 * plane + f];        \
            /* A^T m on the rows, then A on the columns */                                      \
            T s0 = m0 + m4 + m8, s1 = m1 + m5 + m9, s2 = m2 + m6 + m10, s3 = m3 + m7 + m11;     \
            T u0 = m4 - m8 - m12, u1 = m5 - m9 - m13, u2 = m6 - m10 - m14;                      \
            T u3 = m7 - m11 - m15;                                                              \
            ye0[f] = s0 + s1 + s2 + b;                                                          \
            yo0[f] = s1 - s2 - s3 + b;                                                          \
            ye1[f] = u0 + u1 + u2 + b;                                                          \
            yo1[f] = u1 - u2 - u3 + b;                                                          \
        }                                                                                       \
        T *yp = y + (n * O + o) * OH * OW;                                                      \
        for (long ty = 0; ty < th; ty++)                                                        \
        for (int i = 0; i < 2 && 2 * ty + i < OH; i++) {                                        \
            const T *e = (i ? ye1 : ye0) + ty * W1, *od = (i ? yo1 : yo0) + ty * W1;            \
            T *out = yp + (2 * ty + i) * OW;                                                    \
            for (long tx = 0; tx < OW / 2; tx++) {                                              \
                out[2 * tx] = e[tx];                                                            \
                out[2 * tx + 1] = od[tx];                                                       \
            }                                                                                   \
            if (OW & 1) out[OW - 1] = e[OW / 2];                                                \
        }                                                                                       \
    }                                                                                           \
    free(buf);                                                                                  \
}                                                                                               \
                                                                                                \
/* Tg (16, O, P) = A g A^T for every 2x2 block g of gy (n_img, O, OH, OW), zero past OH or OW:  \
 * the output gradient's side of the weight gradient. */                                        \
static void winograd_grad_output_##S(const T *restrict gy, long n_img, long O, long OH,         \
                                     long OW, long th, long tw, T *restrict Tg) {               \
    long W1 = tw + 1, L = th * W1, P = n_img * L, plane = O * P, size = (th + 1) * W1;          \
    T *q = malloc((4 * size + 2 * L) * sizeof(T));                                              \
    if (!q) return;                                                                             \
    T *pp = q + 4 * size, *rr = pp + L;                                                         \
    for (long n = 0; n < n_img; n++)                                                            \
    for (long o = 0; o < O; o++) {                                                              \
        /* 2x2 block f = ty * W1 + tx is (a b; c d) = (q0 q1; q2 q3)[f]; the dummy column       \
         * tx = tw lies past OW, so its blocks are zero */                                      \
        winograd_split_##S(gy + (n * O + o) * OH * OW, OH, OW, 0, 0, th, tw, q);           \
        const T *qa = q, *qb = q + size, *qc = q + 2 * size, *qd = q + 3 * size;                \
        T *t = Tg + o * P + n * L;                                                              \
        /* A g on the rows: (a b), (a+c b+d), (a-c b-d), (-c -d); then each row (p r) ->        \
         * (p, p+r, p-r, -r), one row (four planes of Tg) per loop: loops writing all 16        \
         * planes at once ran 6x slower */                                                      \
        for (int i = 0; i < 4; i++) {                                                           \
            T *t0 = t + (4 * i) * plane, *t1 = t0 + plane, *t2 = t1 + plane, *t3 = t2 + plane;  \
            if (i == 0) {                                                                       \
                winograd_a_##S(qa, qb, L, t0, t1, t2, t3);                                      \
            } else {                                                                            \
                winograd_rows_##S(qa, qb, qc, qd, i == 1 ? 1 : i == 2 ? -1 : 0, L, pp, rr);     \
                winograd_a_##S(pp, rr, L, t0, t1, t2, t3);                                      \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    free(q);                                                                                    \
}

WINOGRAD(float, f32)
WINOGRAD(double, f64)

/* ---- Winograd convolution driver: blocks of images over threads ----------------------------
 * The whole Winograd forward (or weight gradient) of a batch in one call: each thread takes an
 * equal range of images and runs transform, GEMMs and transform on blocks of nb of them in its
 * own part of the caller's workspace (a block's arrays stay in its core's cache; the caller
 * reuses the workspace across calls, as fresh memory costs a page fault per page). Threads
 * are created per call and joined before returning: a call is milliseconds of work, and no
 * thread is left spinning to compete with BLAS's or the next op's. */
#define WINOGRAD_MAX_THREADS 16

/* MKL's cblas_sgemm / cblas_dgemm and MKL_Set_Num_Threads_Local, when the caller passes them
 * (deepgrad/_native/mkl.py: native_gemm): the 16 GEMMs of a block then run in MKL, on one
 * thread each, inside the threads below. Row-major, transpose flags as in CBLAS. */
typedef void (*gemm_f32_fn)(int, int, int, int, int, int, float, const float *, int,
                            const float *, int, float, float *, int);
typedef void (*gemm_f64_fn)(int, int, int, int, int, int, double, const double *, int,
                            const double *, int, double, double *, int);
typedef int (*threads_local_fn)(int);
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

#define WINOGRAD_DRIVER(T, S)                                                                   \
typedef struct {                                                                                \
    const T *src; long C, Hs, Ws, top, left; const T *U; long O; const T *bias; T *y;           \
    long OH, OW, th, tw, nb, n0, n1; const T *gy; T *acc; T *work;                              \
    gemm_##S##_fn gemm; threads_local_fn threads_local;                                         \
} winograd_job_##S;                                                                             \
                                                                                                \
/* MKL on this thread alone while it runs a job (its own threads would compete with ours) */    \
static int winograd_mkl_enter_##S(const winograd_job_##S *j) {                                  \
    return j->gemm && j->threads_local ? j->threads_local(1) : 0;                               \
}                                                                                               \
static void winograd_mkl_leave_##S(const winograd_job_##S *j, int previous) {                   \
    if (j->gemm && j->threads_local) j->threads_local(previous);                                \
}                                                                                               \
                                                                                                \
/* elements of workspace one thread needs: V and M (or Tg) blocks, and the packed U (forward)   \
 * or its own weight-gradient sums (backward) */                                                \
long winograd_workspace_##S(long C, long O, long OH, long OW, long nb, int forward) {           \
    long cap = nb * ((OH + 1) / 2) * ((OW + 1) / 2 + 1);                                        \
    long opad = (O + WG_MR - 1) / WG_MR * WG_MR;                                                \
    long cpad = (C + WG_NT_CP - 1) / WG_NT_CP * WG_NT_CP;                                       \
    long extra = forward ? 16 * opad * C + 16 * C : 16 * O * C + (opad + cpad) * cap;           \
    return 16 * C * cap + 16 * O * cap + extra;                                                 \
}                                                                                               \
                                                                                                \
static void *winograd_forward_run_##S(void *arg) {                                              \
    winograd_job_##S *j = arg;                                                                  \
    long per = j->th * (j->tw + 1), cap = j->nb * per;                                          \
    T *v = j->work, *m = v + 16 * j->C * cap, *packed = m + 16 * j->O * cap;                    \
    T *tail = packed + 16 * ((j->O + WG_MR - 1) / WG_MR) * WG_MR * j->C;                        \
    int mkl = winograd_mkl_enter_##S(j);                                                        \
    if (!j->gemm) winograd_pack_##S(j->U, j->O, j->C, packed);                                  \
    for (long n = j->n0; n < j->n1; n += j->nb) {                                               \
        long k = j->n1 - n < j->nb ? j->n1 - n : j->nb, P = k * per, O = j->O, C = j->C;        \
        winograd_input_##S(j->src + n * j->C * j->Hs * j->Ws, k, j->C, j->Hs, j->Ws, j->top,    \
                           j->left, j->th, j->tw, v);                                           \
        if (j->gemm) /* m[q] (O, P) = U[q] (O, C) @ v[q] (C, P) */                              \
            for (int q = 0; q < 16; q++)                                                        \
                j->gemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_NO_TRANS, O, P, C, 1,            \
                        j->U + q * O * C, C, v + q * C * P, P, 0, m + q * O * P, P);            \
        else                                                                                    \
            winograd_gemm_##S(packed, v, O, C, P, m, tail);                                     \
        winograd_output_##S(m, j->O, k, j->th, j->tw, j->OH, j->OW, j->bias,                    \
                            j->y + n * j->O * j->OH * j->OW);                                   \
    }                                                                                           \
    winograd_mkl_leave_##S(j, mkl);                                                             \
    return 0;                                                                                   \
}                                                                                               \
                                                                                                \
static void *winograd_wgrad_run_##S(void *arg) {                                                \
    winograd_job_##S *j = arg;                                                                  \
    long per = j->th * (j->tw + 1), cap = j->nb * per;                                          \
    T *v = j->work, *t = v + 16 * j->C * cap, *scratch = t + 16 * j->O * cap;                   \
    int mkl = winograd_mkl_enter_##S(j);                                                        \
    for (long n = j->n0; n < j->n1; n += j->nb) {                                               \
        long k = j->n1 - n < j->nb ? j->n1 - n : j->nb, P = k * per, O = j->O, C = j->C;        \
        winograd_input_##S(j->src + n * j->C * j->Hs * j->Ws, k, j->C, j->Hs, j->Ws, j->top,    \
                           j->left, j->th, j->tw, v);                                           \
        winograd_grad_output_##S(j->gy + n * j->O * j->OH * j->OW, k, j->O, j->OH, j->OW,       \
                                 j->th, j->tw, t);                                              \
        if (j->gemm) /* acc[q] (O, C) += t[q] (O, P) @ v[q] (C, P)^T */                         \
            for (int q = 0; q < 16; q++)                                                        \
                j->gemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS, O, C, P, 1,               \
                        t + q * O * P, P, v + q * C * P, P, 1, j->acc + q * O * C, C);          \
        else                                                                                    \
            winograd_gemm_nt_##S(t, v, O, C, P, j->acc, scratch);                               \
    }                                                                                           \
    winograd_mkl_leave_##S(j, mkl);                                                             \
    return 0;                                                                                   \
}                                                                                               \
                                                                                                \
/* run `job` over images [0, N) split between `threads` threads, thread i in work + i * stride; \
 * acc_size > 0: each thread past the first sums into its own zeroed acc (at the end of its     \
 * workspace), added into base->acc at the end */                                               \
static void winograd_spread_##S(winograd_job_##S *base, long N, int threads, T *work,           \
                                long stride, void *(*run)(void *), long acc_size) {             \
    winograd_job_##S jobs[WINOGRAD_MAX_THREADS];                                                \
    pthread_t tid[WINOGRAD_MAX_THREADS];                                                        \
    int started[WINOGRAD_MAX_THREADS] = {0};                                                    \
    for (int i = 0; i < threads; i++) {                                                         \
        jobs[i] = *base;                                                                        \
        jobs[i].n0 = N * i / threads;                                                           \
        jobs[i].n1 = N * (i + 1) / threads;                                                     \
        jobs[i].work = work + i * stride;                                                       \
        if (acc_size && i > 0) {                                                                \
            jobs[i].acc = jobs[i].work + stride - acc_size;                                     \
            memset(jobs[i].acc, 0, acc_size * sizeof(T));                                       \
        }                                                                                       \
    }                                                                                           \
    for (int i = 1; i < threads; i++)                                                           \
        started[i] = pthread_create(&tid[i], 0, run, &jobs[i]) == 0;                            \
    for (int i = 1; i < threads; i++) /* a thread that could not start runs here */             \
        if (!started[i]) run(&jobs[i]);                                                         \
    run(&jobs[0]);                                                                              \
    for (int i = 1; i < threads; i++) {                                                         \
        if (started[i]) pthread_join(tid[i], 0);                                                \
        if (acc_size)                                                                           \
            for (long q = 0; q < acc_size; q++) base->acc[q] += jobs[i].acc[q];                 \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* y (N, O, OH, OW) (plus bias) = the 3x3 correlation of src (N, C, Hs, Ws), zero-padded by top \
 * rows and left columns, with U (16, O, C) = G w G^T; blocks of nb images, on `threads`        \
 * threads (at most N) with workspaces of `stride` elements each. Returns 0, or -1 when the     \
 * arguments do not fit (nothing is computed). */                                               \
int winograd_conv_##S(const T *src, long N, long C, long Hs, long Ws, long top, long left,      \
                      const T *U, long O, const T *bias, T *y, long OH, long OW, long nb,       \
                      int threads, T *work, long stride, void *gemm, void *threads_local) {     \
    if (threads < 1 || threads > WINOGRAD_MAX_THREADS || threads > N || nb < 1                  \
            || stride < winograd_workspace_##S(C, O, OH, OW, nb, 1))                            \
        return -1;                                                                              \
    winograd_job_##S job = {src, C, Hs, Ws, top, left, U, O, bias, y, OH, OW, (OH + 1) / 2,     \
                            (OW + 1) / 2, nb, 0, N, 0, 0, 0, (gemm_##S##_fn)gemm,               \
                            (threads_local_fn)threads_local};                                   \
    winograd_spread_##S(&job, N, threads, work, stride, winograd_forward_run_##S, 0);           \
    return 0;                                                                                   \
}                                                                                               \
                                                                                                \
/* acc (16, O, C) = sum over all tiles of (A gy A^T) . (B^T d B), the transformed weight        \
 * gradient, from the input src (N, C, Hs, Ws) padded as in winograd_conv and gy (N, O, OH,     \
 * OW); threads and workspace as in winograd_conv. */                                           \
int winograd_weight_grad_##S(const T *src, long N, long C, long Hs, long Ws, long top,          \
                             long left, const T *gy, long O, long OH, long OW, long nb,         \
                             int threads, T *work, long stride, T *acc, void *gemm,             \
                             void *threads_local) {                                             \
    if (threads < 1 || threads > WINOGRAD_MAX_THREADS || threads > N || nb < 1                  \
            || stride < winograd_workspace_##S(C, O, OH, OW, nb, 0))                            \
        return -1;                                                                              \
    memset(acc, 0, 16 * O * C * sizeof(T));                                                     \
    winograd_job_##S job = {src, C, Hs, Ws, top, left, 0, O, 0, 0, OH, OW, (OH + 1) / 2,        \
                            (OW + 1) / 2, nb, 0, N, gy, acc, 0, (gemm_##S##_fn)gemm,            \
                            (threads_local_fn)threads_local};                                   \
    winograd_spread_##S(&job, N, threads, work, stride, winograd_wgrad_run_##S, 16 * O * C);    \
    return 0;                                                                                   \
}

/* U (16, O, C) = G w G^T for each 3x3 filter w[o][c] of w (O, C, 3, 3), or with flip, of the
 * flipped, transposed weight (the input gradient's): w' (C_out = C, C_in = O) with
 * w'[c][o][i][j] = w[o][c][2 - i][2 - j], giving U (16, C, O). G's rows (1 0 0), (.5 .5 .5),
 * (.5 -.5 .5), (0 0 1). */
#define WINOGRAD_WEIGHT(T, S)                                                                   \
void winograd_weight_##S(const T *restrict w, long O, long C, int flip, T *restrict U) {        \
    long rows = flip ? C : O, cols = flip ? O : C;                                              \
    for (long r = 0; r < rows; r++)                                                             \
    for (long q = 0; q < cols; q++) {                                                           \
        const T *f = flip ? w + (q * C + r) * 9 : w + (r * C + q) * 9;                          \
        T g[3][3], t[4][3];                                                                     \
        for (int i = 0; i < 3; i++)                                                             \
            for (int j = 0; j < 3; j++) g[i][j] = flip ? f[(2 - i) * 3 + 2 - j] : f[i * 3 + j]; \
        for (int j = 0; j < 3; j++) { /* G g */                                                 \
            t[0][j] = g[0][j];                                                                  \
            t[1][j] = (g[0][j] + g[1][j] + g[2][j]) * (T)0.5;                                   \
            t[2][j] = (g[0][j] - g[1][j] + g[2][j]) * (T)0.5;                                   \
            t[3][j] = g[2][j];                                                                  \
        }                                                                                       \
        for (int i = 0; i < 4; i++) { /* (G g) G^T */                                           \
            T *u = U + (4 * i) * rows * cols + r * cols + q;                                    \
            u[0] = t[i][0];                                                                     \
            u[rows * cols] = (t[i][0] + t[i][1] + t[i][2]) * (T)0.5;                            \
            u[2 * rows * cols] = (t[i][0] - t[i][1] + t[i][2]) * (T)0.5;                        \
            u[3 * rows * cols] = t[i][2];                                                       \
        }                                                                                       \
    }                                                                                           \
}

WINOGRAD_WEIGHT(float, f32)
WINOGRAD_WEIGHT(double, f64)
WINOGRAD_DRIVER(float, f32)
WINOGRAD_DRIVER(double, f64)

/* ---- the LSTM's time loop ------------------------------------------------------------------
 * deepgrad/ops/rnn.py: LSTMLayer's loops over the time steps of one direction, with MKL's GEMM
 * (deepgrad/_native/mkl.py: native_gemm) and NumPy's own inner loop of np.tanh for the dtype
 * (deepgrad/_native/__init__.py: ufunc_loop) passed in. Each step makes the calls the Python
 * loops make (_forward_native, _backward_native), with the same arguments, so the results are
 * the same bits; what goes is the interpreter between them, about a tenth of the layer. */
/* Copy n bytes into memory that will not be read again soon by this core, bypassing its caches
 * where the CPU can: an ordinary store first reads each destination line in from memory, which
 * made copying the LSTM's gate gradients into their columns (8 MB a step of char_lstm) take
 * 2.2-2.7 ms instead of 0.6. Ends with stream_done. */
static inline void stream_copy(void *restrict dst, const void *restrict src, long n) {
#if defined(__x86_64__) && defined(__SSE2__)
    if ((uintptr_t)dst % 16 == 0 && (uintptr_t)src % 16 == 0 && n % 16 == 0) {
        float *d = dst;
        const float *s = src;
        for (long k = 0; k < n / 4; k += 4) _mm_stream_ps(d + k, _mm_load_ps(s + k));
        return;
    }
#endif
    memcpy(dst, src, n);
}

/* Order the streamed stores before anything after it (another thread may read them next). */
static inline void stream_done(void) {
#if defined(__x86_64__) && defined(__SSE2__)
    _mm_sfence();
#endif
}

/* Steps [lo, lo + count) of a store of per-step blocks (step u's block of `rows` rows of n
 * elements, each es bytes, at src + u * block elements) into columns: row g of step u at
 * dst + g * ld + u * n, streamed (ends with stream_done). */
static inline void steps_to_columns(void *dst, long ld, const void *src, long block, long rows,
                                    long n, long lo, long count, long es) {
    for (long g = 0; g < rows; g++)
        for (long u = lo; u < lo + count; u++)
            stream_copy((char *)dst + (g * ld + u * n) * es, (const char *)src + (u * block + g * n)
                        * es, n * es);
}

/* In a loop over time steps: step t is done; every `chunk` steps, and at the `last`, the blocks
 * of the steps pending are copied into columns (steps_to_columns), while they are still in
 * cache. `ascending`: t grows from step to step. Returns the steps still pending. */
typedef struct {
    void *dst;
    const void *src;
    long ld, block, rows, n, lo, count, es, parts;
} columns_ctx;

/* steps_to_columns for part i of the rows; each part orders its own streamed stores */
static void columns_part(void *ctx, long i) {
    columns_ctx *c = ctx;
    long g0 = part_start(c->rows, c->parts, i, 1), g1 = part_start(c->rows, c->parts, i + 1, 1);
    steps_to_columns((char *)c->dst + g0 * c->ld * c->es, c->ld,
                     (const char *)c->src + g0 * c->n * c->es, c->block, g1 - g0, c->n, c->lo,
                     c->count, c->es);
    stream_done();
}

static inline long step_done(void *dst, long ld, const void *src, long block, long rows, long n,
                             long t, int ascending, int last, long pending, long chunk, long es) {
    if (++pending != chunk && !last) return pending;
    columns_ctx c = {dst, src, ld, block, rows, n, ascending ? t - pending + 1 : t, pending, es,
                     parts_for(rows * n * pending)};
    run_parts(columns_part, &c, c.parts);
    return 0;
}

#define LSTM_SEQUENCE(T, S)                                                                     \
static void lstm_tanh_##S(ufunc_loop_fn loop, void *data, T *x, T *y, long n) {                 \
    char *args[2] = {(char *)x, (char *)y};                                                     \
    long dims[1] = {n}, steps[2] = {sizeof(T), sizeof(T)};                                      \
    loop(args, dims, steps, data);                                                              \
}                                                                                               \
                                                                                                \
/* The gate math of one forward step for the hidden units of part i (a block of rows of each    \
 * gate, on whole cache lines of the output rows): tanh of the gates, the cells, tanh of the    \
 * cells, the state h (rows ldh apart) and its transpose into the output rows. One part makes   \
 * one tanh call over all four gates, as the NumPy loop does. */                                \
typedef struct {                                                                                \
    ufunc_loop_fn loop;                                                                         \
    void *data;                                                                                 \
    T *a;                                                                                       \
    const T *c_prev;                                                                            \
    T *c, *tc, *h;                                                                              \
    long ldh;                                                                                   \
    T *out;                                                                                     \
    long out_sn, H, N, parts;                                                                   \
} lstm_step_ctx_##S;                                                                            \
                                                                                                \
static void lstm_step_part_##S(void *ctx, long i) {                                             \
    lstm_step_ctx_##S *s = ctx;                                                                 \
    long N = s->N, hn = s->H * N;                                                               \
    long j0 = part_start(s->H, s->parts, i, 16), j1 = part_start(s->H, s->parts, i + 1, 16);    \
    long lo = j0 * N, n = (j1 - j0) * N;                                                        \
    if (n == 0) return;                                                                         \
    if (s->parts == 1)                                                                          \
        lstm_tanh_##S(s->loop, s->data, s->a, s->a, 4 * hn);                                    \
    else                                                                                        \
        for (int g = 0; g < 4; g++)                                                             \
            lstm_tanh_##S(s->loop, s->data, s->a + g * hn + lo, s->a + g * hn + lo, n);         \
    lstm_gates_rows_##S(s->a, hn, s->c_prev, s->c, lo, lo + n);                                 \
    lstm_tanh_##S(s->loop, s->data, s->c + lo, s->tc + lo, n);                                  \
    lstm_output_##S(s->a + 2 * hn + lo, s->tc + lo, s->h + j0 * s->ldh, s->ldh, s->out + j0,    \
                    j1 - j0, N, s->out_sn);                                                     \
}                                                                                               \
                                                                                                \
/* One backward step (lstm_backward_rows) for the hidden units of part i */                     \
typedef struct {                                                                                \
    T *a;                                                                                       \
    const T *tc, *c_prev;                                                                       \
    T *dh_rec;                                                                                  \
    long rj, rn;                                                                                \
    const T *gout;                                                                              \
    long gn, gj;                                                                                \
    T *dc, *dh;                                                                                 \
    long H, N, parts;                                                                           \
    int flush;                                                                                  \
} lstm_back_ctx_##S;                                                                            \
                                                                                                \
static void lstm_back_part_##S(void *ctx, long i) {                                             \
    lstm_back_ctx_##S *s = ctx;                                                                 \
    long N = s->N;                                                                              \
    long j0 = part_start(s->H, s->parts, i, 16), j1 = part_start(s->H, s->parts, i + 1, 16);    \
    long lo = j0 * N;                                                                           \
    if (j1 == j0) return;                                                                       \
    lstm_backward_rows_##S(s->a + lo, s->H * N, s->tc + lo, s->c_prev + lo,                     \
                           s->dh_rec + j0 * s->rj, s->rj, s->rn, s->gout + j0 * s->gj, s->gn,   \
                           s->gj, s->dc + lo, s->dh + lo, j1 - j0, N, s->flush);                \
}                                                                                               \
                                                                                                \
/* Forward over `steps` steps, in reverse order with `reverse`. w (4H, K): the gate weights;    \
 * cols (K rows, ld apart): step t's GEMM input [h; x_t; 1] at column t * N, whose h rows the   \
 * step before writes. Step t's gate block (4H, N), cell and tanh(cell) (H, N) are at           \
 * a + (t % a_mod) * 4HN, c + (t % c_mod) * HN, tc + (t % tc_mod) * HN (a_mod = steps to keep   \
 * every step's, fewer to reuse buffers). c_init (H, N): the cell before the first step;        \
 * h_last (H, N): the state after the last; out + t * out_st: step t's output (N, H), rows      \
 * out_sn apart. */                                                                             \
void lstm_forward_seq_##S(const T *w, long K, T *cols, long ld, T *a, long a_mod, T *c,         \
                          long c_mod, T *tc, long tc_mod, const T *c_init, T *h_last, T *out,   \
                          long out_st, long out_sn, long H, long N, long steps, int reverse,    \
                          void *gemm, void *tanh_loop, void *tanh_data) {                       \
    long hn = H * N, parts = parts_for(4 * hn);                                                 \
    const T *c_prev = c_init;                                                                   \
    for (long s = 0; s < steps; s++) {                                                          \
        long t = reverse ? steps - 1 - s : s, next = reverse ? t - 1 : t + 1;                   \
        T *at = a + (t % a_mod) * 4 * hn, *ct = c + (t % c_mod) * hn;                           \
        T *tct = tc + (t % tc_mod) * hn;                                                        \
        ((gemm_##S##_fn)gemm)(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_NO_TRANS, 4 * H, N, K, 1,  \
                              w, K, cols + t * N, ld, 0, at, N);                                \
        int inner = 0 <= next && next < steps;                                                  \
        lstm_step_ctx_##S sc = {(ufunc_loop_fn)tanh_loop, tanh_data, at, c_prev, ct, tct,       \
                                inner ? cols + next * N : h_last, inner ? ld : N,               \
                                out + t * out_st, out_sn, H, N, parts};                         \
        run_parts(lstm_step_part_##S, &sc, parts);                                              \
        c_prev = ct;                                                                            \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* Backpropagation through the steps of lstm_forward_seq, last step first. a (steps, 4H, N):    \
 * the gate activations, overwritten with the gradients of their pre-activations; tc, c         \
 * (steps, H, N) and c_init as saved. The carried state gradient enters as ghn (N, H) with      \
 * strides (gn_n, gn_j) (the grad of h_n), and step t's output gradient is gout + t * g_st,     \
 * strides (gn, gj). dc (H, N): the carried cell gradient, in and out; dh (H, N): scratch; rec  \
 * (H, N): the grad of the state before the last step done. wht (H, 4H): W_hh in gate order,    \
 * transposed and contiguous (see rnn.py: _transposed_recurrent_weight).                        \
 * Every `chunk` steps, the finished gate blocks are copied into dz (4H rows, ldz apart), step  \
 * t at column t * N, while they are still in cache. */                                         \
void lstm_backward_seq_##S(T *a, const T *tc, const T *c, const T *c_init, const T *ghn,        \
                           long gn_n, long gn_j, const T *gout, long g_st, long gn, long gj,    \
                           T *dc, T *dh, T *rec, const T *wht, T *dz, long ldz, long chunk,     \
                           long H, long N, long steps, int reverse, void *gemm) {               \
    long hn = H * N, pending = 0, parts = parts_for(4 * hn);                                    \
    const T *src = ghn;                                                                         \
    long rj = gn_j, rn = gn_n;                                                                  \
    for (long s = 0; s < steps; s++) {                                                          \
        long t = reverse ? s : steps - 1 - s, prev = reverse ? t + 1 : t - 1;                   \
        T *at = a + t * 4 * hn;                                                                 \
        lstm_back_ctx_##S bc = {at, tc + t * hn, 0 <= prev && prev < steps ? c + prev * hn      \
                                : c_init, (T *)src, rj, rn, gout + t * g_st, gn, gj, dc, dh, H, \
                                N, parts, s > 0};                                               \
        run_parts(lstm_back_part_##S, &bc, parts);                                              \
        ((gemm_##S##_fn)gemm)(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_NO_TRANS, H, N, 4 * H, 1,  \
                              wht, 4 * H, at, N, 0, rec, N);                                    \
        src = rec, rj = N, rn = 1;                                                              \
        pending = step_done(dz, ldz, a, 4 * hn, 4 * H, N, t, reverse, s == steps - 1, pending,  \
                            chunk, sizeof(T));                                                  \
    }                                                                                           \
    stream_done();                                                                              \
}

LSTM_SEQUENCE(float, f32)
LSTM_SEQUENCE(double, f64)

/* ---- the LSTM's fused loops (float32, AVX2 with FMA) -----------------------------------------
 * deepgrad/ops/rnn.py: LSTMLayer._forward_fused, _backward_fused. One call runs a direction's
 * whole loop over time; each step is one parallel loop whose parts own blocks of hidden units.
 * Forward, a part computes the four gates' pre-activations of its units (register tiles of a
 * GEMM against weights packed once per call) and finishes their gate math while the tiles are
 * still in registers and L1: no second pass over the gates, no GEMM library call per step.
 * Backward, a part computes its units' rows of W_hh^T @ (the gate gradients of the step after)
 * the same way and turns them into its units' gate gradients. On the AMD EPYC this was written
 * on (AVX2, no AVX-512), MKL ran the step products (1024 x 321 by 321 x 32, 256 x 1024 by
 * 1024 x 32) at 50-51 GFLOP/s on one core and these tiles at 63; the gate math had been a third
 * of the forward loop's time, half of it NumPy's tanh. So these loops give float32 results
 * equal to the NumPy path's to rounding, not bit for bit: their sums run in another order, with
 * fused multiply-adds, and the forward's tanh is its own. Builds with AVX-512 keep MKL's
 * products, which were measured there. */
#if defined(__AVX2__) && defined(__FMA__)
#define HAVE_FMA8 1 /* the 8-lane float32 vectors and fused multiply-adds below */
#else
#define HAVE_FMA8 0
#endif
#if HAVE_FMA8 && !defined(__AVX512F__)
#define LSTM_FUSED 1
#else
#define LSTM_FUSED 0
#endif

#define FU 6  /* hidden units per tile: its rows */
#define FC 16 /* columns per tile: two vectors */

/* whether this build has lstm_forward_fused_f32, lstm_backward_fused_f32 and tanh_fast_f32 */
int lstm_fused_available(void) { return LSTM_FUSED; }

/* hidden units per block of lstm_pack_tiles_f32's tiles */
int lstm_tile_units(void) { return FU; }

/* Gate rows (4H, K), blocks (i, f, o, g), into register tiles for lstm_forward_fused: for unit
 * block q and gate g, the FU rows (units q*FU...) k-major, p[((q*4 + g)*K + k)*FU + r], rows
 * past H zero. In parts of whole unit blocks. */
typedef struct {
    const float *w;
    long H, K, parts;
    float *p;
} pack_ctx;

static void lstm_pack_part(void *ctx, long i) {
    pack_ctx *s = ctx;
    long H = s->H, K = s->K, nq = (H + FU - 1) / FU;
    for (long q = part_start(nq, s->parts, i, 1); q < part_start(nq, s->parts, i + 1, 1); q++)
        for (int g = 0; g < 4; g++) {
            float *dst = s->p + (q * 4 + g) * K * FU;
            for (int r = 0; r < FU; r++) {
                long row = q * FU + r;
                const float *src = s->w + (g * H + row) * K;
                for (long k = 0; k < K; k++) dst[k * FU + r] = row < H ? src[k] : 0.0f;
            }
        }
}

void lstm_pack_tiles_f32(const float *w, long H, long K, float *p) {
    pack_ctx c = {w, H, K, parts_for(4 * H * K), p};
    run_parts(lstm_pack_part, &c, c.parts);
}

/* W_hh^T, from W_hh (4H, H) in PyTorch's gate order (i, f, g, o), into the tiles of
 * lstm_backward_fused: for unit block q, the FU rows of W_hh^T (its columns q*FU...) k-major over
 * the gate rows in the order (i, f, o, g), p[(q*4H + k)*FU + r] = W_hh[row(k), q*FU + r], each
 * tile row read as FU contiguous floats; rows past H zero. */
typedef struct {
    const float *w;
    long H, parts;
    float *p;
} pack_rec_ctx;

static void lstm_pack_recurrent_part(void *ctx, long i) {
    pack_rec_ctx *s = ctx;
    long H = s->H, K = 4 * H, nq = (H + FU - 1) / FU;
    for (long q = part_start(nq, s->parts, i, 1); q < part_start(nq, s->parts, i + 1, 1); q++)
        for (long k = 0; k < K; k++) {
            long row = k < 2 * H ? k : k < 3 * H ? k + H : k - H;  /* o and g swap places */
            const float *src = s->w + row * H + q * FU;
            float *dst = s->p + (q * K + k) * FU;
            for (int r = 0; r < FU; r++) dst[r] = q * FU + r < H ? src[r] : 0.0f;
        }
}

void lstm_pack_recurrent_f32(const float *w_hh, long H, float *p) {
    pack_rec_ctx c = {w_hh, H, parts_for(4 * H * H), p};
    run_parts(lstm_pack_recurrent_part, &c, c.parts);
}

#if HAVE_FMA8
typedef float v8_f32 __attribute__((vector_size(32)));
typedef float v8u_f32 __attribute__((vector_size(32), aligned(4)));
typedef int32_t v8_i32 __attribute__((vector_size(32)));
#define SPLAT8(v) ((v8_f32){v, v, v, v, v, v, v, v})

static inline v8_f32 fma8(v8_f32 a, v8_f32 b, v8_f32 c) {
    return (v8_f32)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
}
#endif

#if LSTM_FUSED

/* tanh of 8 floats: x + x^3 P(x^2) below |x| = 0.625 (P least-squares fitted to the series on
 * that range), else (1 - e) / (1 + e) with e = exp(-2|x|) (2^n times a degree-7 Taylor
 * polynomial of the remainder, |x| clamped at 9, where tanh rounds to 1), the sign put back
 * last. Checked over every float: within 1.5 ulp of the rounded true value, odd, NaN to NaN. */
static inline v8_f32 tanh8(v8_f32 x) {
    v8_i32 bits = (v8_i32)x, sign = bits & (int32_t)0x80000000;
    v8_f32 ax = (v8_f32)(bits ^ sign), u = ax * ax;
    v8_f32 p = fma8(SPLAT8(-0.005704042501747608f), u, SPLAT8(0.020637862384319305f));
    p = fma8(p, u, SPLAT8(-0.05373915657401085f));
    p = fma8(p, u, SPLAT8(0.133314311504364f));
    p = fma8(p, u, SPLAT8(-0.3333328068256378f));
    v8_f32 small = fma8(p * u, ax, ax);
    v8_i32 big = ax > SPLAT8(9.0f);
    v8_f32 y = (v8_f32)(((v8_i32)ax & ~big) | ((v8_i32)SPLAT8(9.0f) & big)) * SPLAT8(-2.0f);
    /* n = round(y / ln 2) by adding 1.5 * 2^23: the sum's low mantissa bits hold n */
    v8_f32 t = fma8(y, SPLAT8(1.44269504088896341f), SPLAT8(12582912.0f));
    v8_f32 n = t - SPLAT8(12582912.0f);
    v8_f32 r = fma8(n, SPLAT8(2.12194440e-4f), fma8(n, SPLAT8(-0.693359375f), y));
    v8_f32 q = fma8(SPLAT8(1.0f / 5040), r, SPLAT8(1.0f / 720));
    q = fma8(q, r, SPLAT8(1.0f / 120));
    q = fma8(q, r, SPLAT8(1.0f / 24));
    q = fma8(q, r, SPLAT8(1.0f / 6));
    q = fma8(q, r, SPLAT8(0.5f));
    q = fma8(q, r, SPLAT8(1.0f));
    q = fma8(q, r, SPLAT8(1.0f));
    v8_f32 e = q * (v8_f32)(((v8_i32)t - 0x4B400000 + 127) << 23);
    v8_f32 large = (SPLAT8(1.0f) - e) / (SPLAT8(1.0f) + e);
    v8_i32 lo = ax < SPLAT8(0.625f);
    return (v8_f32)((((v8_i32)small & lo) | ((v8_i32)large & ~lo)) | sign);
}

/* for tests: tanh8 over n floats (a partial vector through zeroed lanes) */
void tanh_fast_f32(const float *x, float *y, long n) {
    for (long k = 0; k < n; k += 8) {
        long len = n - k < 8 ? n - k : 8;
        v8_f32 v = {0};
        memcpy(&v, x + k, len * 4);
        v = tanh8(v);
        memcpy(y + k, &v, len * 4);
    }
}

/* One FU x FC tile of W @ B, where B's first H rows (the state h, rows ldh apart) and its
 * other K - H rows (the input and the ones, rows ldx apart) lie apart: p the tile's packed rows
 * (K x FU), h and x the tile's first column in each; acc[r][v]: row r, vector v of the columns.
 * One sum per element, in the order of k, whatever the tile's position. */
static inline void gate_tile(const float *restrict p, const float *restrict h, long ldh,
                             const float *restrict x, long ldx, long H, long K,
                             v8_f32 acc[FU][2]) {
    v8_f32 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};
    v8_f32 c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};
#define TILE_ROW(r)                                                                             \
    a = SPLAT8(p[r]), c##r##0 = fma8(a, b0, c##r##0), c##r##1 = fma8(a, b1, c##r##1);
#define TILE_STEP(b)                                                                            \
    {                                                                                           \
        v8_f32 b0 = *(const v8u_f32 *)(b), b1 = *(const v8u_f32 *)((b) + 8), a;                 \
        TILE_ROW(0) TILE_ROW(1) TILE_ROW(2) TILE_ROW(3) TILE_ROW(4) TILE_ROW(5)                 \
        p += FU;                                                                                \
    }
    for (long k = 0; k < H; k++) TILE_STEP(h + k * ldh)
    for (long k = 0; k < K - H; k++) TILE_STEP(x + k * ldx)
#undef TILE_STEP
#undef TILE_ROW
    acc[0][0] = c00, acc[0][1] = c01, acc[1][0] = c10, acc[1][1] = c11, acc[2][0] = c20;
    acc[2][1] = c21, acc[3][0] = c30, acc[3][1] = c31, acc[4][0] = c40, acc[4][1] = c41;
    acc[5][0] = c50, acc[5][1] = c51;
}

/* The gate math of `len` (<= 8) columns of one hidden unit from its four pre-activations: gates
 * (i, f, o halved: sigmoid = 0.5 * tanh + 0.5; g tanh) into ai.. (gs apart), the cell
 * c = f * c_prev + i * g, tc = tanh(c), h = o * tc, into c, tc, h, and h transposed into out
 * (column n at out[n * out_sn]). Loads and stores of len elements: a constant 8 makes them
 * whole vectors. */
static inline void lstm_unit8(const v8_f32 z[4], float *ai, long gs, const float *c_prev,
                              float *c, float *tc, float *h, float *out, long out_sn, long len) {
    v8_f32 cp = {0};
    memcpy(&cp, c_prev, len * 4);
    v8_f32 i = tanh8(z[0]) * SPLAT8(0.5f) + SPLAT8(0.5f);
    v8_f32 f = tanh8(z[1]) * SPLAT8(0.5f) + SPLAT8(0.5f);
    v8_f32 o = tanh8(z[2]) * SPLAT8(0.5f) + SPLAT8(0.5f);
    v8_f32 g = tanh8(z[3]);
    v8_f32 fc = f * cp, ig = i * g, cell = fc + ig, t = tanh8(cell), hv = o * t;
    memcpy(ai, &i, len * 4), memcpy(ai + gs, &f, len * 4), memcpy(ai + 2 * gs, &o, len * 4);
    memcpy(ai + 3 * gs, &g, len * 4), memcpy(c, &cell, len * 4), memcpy(tc, &t, len * 4);
    memcpy(h, &hv, len * 4);
    for (long n = 0; n < len; n++) out[n * out_sn] = hv[n];
}

typedef struct {
    const float *p, *h_prev, *x;
    float *a;
    const float *c_prev;
    float *c, *tc, *h, *cols, *out, *scratch;
    long K, H, N, ld, out_sn, parts;
} fused_ctx;

/* Floats of scratch per part of lstm_fused_part: the step's input rows, contiguous, and a
 * zero-padded copy of a partial tile's columns */
static inline long fused_scratch(long K, long H, long N) { return (K - H) * N + K * FC; }

/* A step for the unit blocks of part i: per FC columns, per unit block, the four gate tiles,
 * then each unit's gate math (lstm_unit8). h_prev and h: (H, N); x: the step's input rows,
 * ld apart, which the part first copies into its scratch: rows pages apart would take a TLB
 * entry each in every tile. The new h rows also go to cols (rows ld apart) if given. The
 * columns of a last partial tile come from a zero-padded copy, so no read passes the end of a
 * row. */
static void lstm_fused_part(void *ctx, long i) {
    fused_ctx *s = ctx;
    long H = s->H, K = s->K, N = s->N, hn = H * N, nq = (H + FU - 1) / FU;
    long q0 = part_start(nq, s->parts, i, 1), q1 = part_start(nq, s->parts, i + 1, 1);
    if (q0 == q1) return;
    float *xs = s->scratch + i * fused_scratch(K, H, N), *pad = xs + (K - H) * N;
    for (long k = 0; k < K - H; k++) memcpy(xs + k * N, s->x + k * s->ld, N * sizeof(float));
    for (long c0 = 0; c0 < N; c0 += FC) {
        long width = N - c0 < FC ? N - c0 : FC, ldb = N;
        const float *h = s->h_prev + c0, *x = xs + c0;
        if (width < FC) {
            memset(pad, 0, K * FC * sizeof(float));
            for (long k = 0; k < K; k++)
                memcpy(pad + k * FC, k < H ? h + k * N : x + (k - H) * N, width * 4);
            h = pad, x = pad + H * FC, ldb = FC;
        }
        for (long q = q0; q < q1; q++) {
            v8_f32 acc[4][FU][2];
            for (int g = 0; g < 4; g++)
                gate_tile(s->p + (q * 4 + g) * K * FU, h, ldb, x, ldb, H, K, acc[g]);
            for (int r = 0; r < FU && q * FU + r < H; r++) {
                long j = q * FU + r;
                for (int v = 0; v < 2 && v * 8 < width; v++) {
                    long col = c0 + v * 8, k = j * N + col;
                    long len = width - v * 8 < 8 ? width - v * 8 : 8;
                    v8_f32 z[4] = {acc[0][r][v], acc[1][r][v], acc[2][r][v], acc[3][r][v]};
                    float *hj = s->h + k, *out = s->out + col * s->out_sn + j;
                    if (len == 8)
                        lstm_unit8(z, s->a + k, hn, s->c_prev + k, s->c + k, s->tc + k, hj, out,
                                   s->out_sn, 8);
                    else
                        lstm_unit8(z, s->a + k, hn, s->c_prev + k, s->c + k, s->tc + k, hj, out,
                                   s->out_sn, len);
                    if (s->cols) memcpy(s->cols + j * s->ld + col, hj, len * 4);
                }
            }
        }
    }
}

/* Forward over `steps` steps (in reverse order with `reverse`) with tiles p of the gate weights
 * (lstm_pack_tiles_f32; i, f, o rows pre-halved). cols (K rows, ld apart): step t's GEMM input
 * [h; x_t; 1] at column t * N, of which the kernel reads the input and ones rows; the state h
 * (H, N) goes from step to step in hs (2, H, N), starting in hs[0], and after the last step into
 * h_last. With `keep`, each step also writes its h into the next step's block of cols (for the
 * weight gradient). a, c, tc, c_init, out, out_st, out_sn: as for lstm_forward_seq. Returns 0,
 * or -1 if its scratch memory could not be had (nothing written then). */
int lstm_forward_fused_f32(const float *p, long K, float *cols, long ld, int keep, float *hs,
                           float *a, long a_mod, float *c, long c_mod, float *tc, long tc_mod,
                           const float *c_init, float *h_last, float *out, long out_st,
                           long out_sn, long H, long N, long steps, int reverse) {
    long hn = H * N, parts = parts_for(4 * hn), nq = (H + FU - 1) / FU;
    if (parts > nq) parts = nq;
    float *scratch = malloc(parts * fused_scratch(K, H, N) * sizeof(float));
    if (!scratch) return -1;
    const float *c_prev = c_init;
    for (long s = 0; s < steps; s++) {
        long t = reverse ? steps - 1 - s : s, next = reverse ? t - 1 : t + 1;
        int inner = 0 <= next && next < steps;
        float *ct = c + (t % c_mod) * hn;
        fused_ctx fc = {p, hs + (s % 2) * hn, cols + H * ld + t * N, a + (t % a_mod) * 4 * hn,
                        c_prev, ct, tc + (t % tc_mod) * hn, inner ? hs + (1 - s % 2) * hn : h_last,
                        inner && keep ? cols + next * N : NULL, out + t * out_st, scratch, K, H,
                        N, ld, out_sn, parts};
        run_parts(lstm_fused_part, &fc, parts);
        c_prev = ct;
    }
    free(scratch);
    return 0;
}

/* The RNN gradient flush (flush_f32) of 8 lanes */
static inline v8_f32 flush8(v8_f32 x) {
    v8_i32 bits = (v8_i32)x, tiny = (bits & 0x7f800000) < (24 << 23);
    return (v8_f32)(bits & ~tiny);
}

typedef struct {
    const float *p, *a_prev;
    float *a;
    const float *tc, *c_prev, *src;
    long rj, rn;
    const float *gout;
    long gn, gj;
    float *dc, *rec, *scratch;
    long H, N, parts;
} back_fused_ctx;

/* One backward step of `len` (<= 8) columns of hidden unit j: the incoming dh (rec, flushed,
 * from the product with the step after; at the first step done, the carried gradient src) plus
 * the step's output gradient, then lstm_backward_rows's float operations on 8 lanes. */
static inline void lstm_back_unit8(const back_fused_ctx *s, v8_f32 rec, long j, long col,
                                   long len) {
    long N = s->N, hn = s->H * N, k = j * N + col;
    v8_f32 dk = {0}, go = {0}, i = {0}, f = {0}, o = {0}, g = {0}, t = {0}, cp = {0}, dc = {0};
    if (s->a_prev)
        dk = flush8(rec);
    else
        for (long n = 0; n < len; n++) dk[n] = s->src[j * s->rj + (col + n) * s->rn];
    for (long n = 0; n < len; n++) go[n] = s->gout[(col + n) * s->gn + j * s->gj];
    dk = dk + go;
    float *a = s->a + k;
    memcpy(&i, a, len * 4), memcpy(&f, a + hn, len * 4), memcpy(&o, a + 2 * hn, len * 4);
    memcpy(&g, a + 3 * hn, len * 4), memcpy(&t, s->tc + k, len * 4);
    memcpy(&cp, s->c_prev + k, len * 4), memcpy(&dc, s->dc + k, len * 4);
    if (s->a_prev) dc = flush8(dc);
    v8_f32 sdi = i - i * i, sdf = f - f * f, sdo = o - o * o;
    v8_f32 q = dk * o, d = dc + q;
    q = q * t;
    q = q * t;
    d = d - q;
    v8_f32 ao = (dk * t) * sdo, qi = d * g, qf = d * cp, qg = SPLAT8(1.0f) - g * g;
    qg = qg * i;
    v8_f32 ag = qg * d, dcn = d * f, ai = qi * sdi, af = qf * sdf;
    memcpy(a, &ai, len * 4), memcpy(a + hn, &af, len * 4), memcpy(a + 2 * hn, &ao, len * 4);
    memcpy(a + 3 * hn, &ag, len * 4), memcpy(s->dc + k, &dcn, len * 4);
}

/* A backward step for the unit blocks of part i: per FC columns, per unit block, the tile of
 * W_hh^T @ (the gate gradients of the step done before) for those units, which is their dh,
 * then their gate gradients (lstm_back_unit8) over this step's activations. With a NULL a, the
 * tile alone, into rec (H, N): the gradient of the state before the last step done. A partial
 * tile's columns come from a zero-padded copy (scratch, 4H x FC per part). */
static void lstm_back_fused_part(void *ctx, long i) {
    back_fused_ctx *s = ctx;
    long H = s->H, N = s->N, K = 4 * H, nq = (H + FU - 1) / FU;
    long q0 = part_start(nq, s->parts, i, 1), q1 = part_start(nq, s->parts, i + 1, 1);
    if (q0 == q1) return;
    for (long c0 = 0; c0 < N; c0 += FC) {
        long width = N - c0 < FC ? N - c0 : FC, ldb = N;
        const float *b = s->a_prev ? s->a_prev + c0 : NULL;
        if (b && width < FC) {
            float *pad = s->scratch + i * K * FC;
            memset(pad, 0, K * FC * sizeof(float));
            for (long k = 0; k < K; k++) memcpy(pad + k * FC, b + k * N, width * 4);
            b = pad, ldb = FC;
        }
        for (long q = q0; q < q1; q++) {
            v8_f32 acc[FU][2] = {{{0}}};
            if (b) gate_tile(s->p + q * K * FU, b, ldb, b, ldb, K, K, acc);
            for (int r = 0; r < FU && q * FU + r < H; r++) {
                long j = q * FU + r;
                for (int v = 0; v < 2 && v * 8 < width; v++) {
                    long col = c0 + v * 8, len = width - v * 8 < 8 ? width - v * 8 : 8;
                    if (!s->a)
                        memcpy(s->rec + j * N + col, &acc[r][v], len * 4);
                    else if (len == 8)
                        lstm_back_unit8(s, acc[r][v], j, col, 8);
                    else
                        lstm_back_unit8(s, acc[r][v], j, col, len);
                }
            }
        }
    }
}

/* lstm_backward_seq with its step products in register tiles of W_hh^T, packed once per call
 * (lstm_pack_recurrent_f32), each fused with the gate gradients it feeds: one parallel loop a
 * step, and one more for rec at the end. The arguments as there, less dh, wht and gemm. Returns
 * 0, or -1 if its scratch memory could not be had (nothing written then). */
int lstm_backward_fused_f32(const float *p, float *a, const float *tc, const float *c,
                            const float *c_init, const float *ghn, long gn_n, long gn_j,
                            const float *gout, long g_st, long gn, long gj, float *dc, float *rec,
                            float *dz, long ldz, long chunk, long H, long N, long steps,
                            int reverse) {
    long hn = H * N, pending = 0, parts = parts_for(4 * hn), nq = (H + FU - 1) / FU;
    if (parts > nq) parts = nq;
    float *scratch = malloc(parts * 4 * H * FC * sizeof(float));
    if (!scratch) return -1;
    const float *a_prev = NULL;
    for (long s = 0; s < steps; s++) {
        long t = reverse ? s : steps - 1 - s, prev = reverse ? t + 1 : t - 1;
        float *at = a + t * 4 * hn;
        back_fused_ctx bc = {p, a_prev, at, tc + t * hn,
                             0 <= prev && prev < steps ? c + prev * hn : c_init, ghn, gn_j, gn_n,
                             gout + t * g_st, gn, gj, dc, rec, scratch, H, N, parts};
        run_parts(lstm_back_fused_part, &bc, parts);
        a_prev = at;
        pending = step_done(dz, ldz, a, 4 * hn, 4 * H, N, t, reverse, s == steps - 1, pending,
                            chunk, sizeof(float));
    }
    back_fused_ctx rc = {p, a_prev, NULL, NULL, NULL, NULL, 0, 0, NULL, 0, 0, NULL, rec, scratch,
                         H, N, parts};
    run_parts(lstm_back_fused_part, &rc, parts);
    stream_done();
    free(scratch);
    return 0;
}
#endif /* LSTM_FUSED */

/* ---- the tanh RNN's time loop -----------------------------------------------------------------
 * deepgrad/ops/rnn.py: RNNLayer's loops, as the LSTM's above: each step makes the Python loop's
 * calls (MKL's GEMM, NumPy's tanh loop) and float operations, so the results are the same
 * bits. */
#define RNN_SEQUENCE(T, S)                                                                      \
/* Forward over `steps` steps (reverse: last first). w (H, K) = [w_hh | w_ih | b]; cols (K rows,  \
 * ld apart): step t's GEMM input [h; x_t; 1] at column t * N, whose h rows the step before      \
 * writes; tmp (H, N) scratch; h_last (H, N): the state after the last step; out + t * out_st:   \
 * step t's output (N, H), rows out_sn apart. */                                                \
void rnn_forward_seq_##S(const T *w, long K, T *cols, long ld, T *tmp, T *h_last, T *out,        \
                         long out_st, long out_sn, long H, long N, long steps, int reverse,     \
                         void *gemm, void *tanh_loop, void *tanh_data) {                        \
    for (long s = 0; s < steps; s++) {                                                          \
        long t = reverse ? steps - 1 - s : s, next = reverse ? t - 1 : t + 1;                   \
        ((gemm_##S##_fn)gemm)(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_NO_TRANS, H, N, K, 1, w,   \
                              K, cols + t * N, ld, 0, tmp, N);                                  \
        lstm_tanh_##S((ufunc_loop_fn)tanh_loop, tanh_data, tmp, tmp, H * N);                    \
        T *h = 0 <= next && next < steps ? cols + next * N : h_last;                            \
        long ldh = 0 <= next && next < steps ? ld : N;                                          \
        for (long j = 0; j < H; j++) memcpy(h + j * ldh, tmp + j * N, N * sizeof(T));           \
        transpose_##S(tmp, N, out + t * out_st, out_sn, H, N);                                  \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* Backpropagation through the steps of rnn_forward_seq. z (steps, H, N): each step's gradient  \
 * of the pre-activation, dh * (1 - h^2), written here; cols, ld and h_last as the forward left \
 * them (step t's output h is the next step's state block, or h_last). The carried gradient    \
 * enters as ghn (N, H) with strides (gn_n, gn_j); step t's output gradient is gout + t * g_st, \
 * strides (gn, gj). dh (H, N) scratch; rec (H, N): the carried gradient after each step's GEMM \
 * with wht = w_hh^T (H, H, contiguous), flushed (deepgrad/ops/rnn.py: _Flush). Every `chunk`   \
 * steps, the finished z blocks are copied into dz (H rows, ldz apart), step t at column t * N. \
 */                                                                                             \
void rnn_backward_seq_##S(T *z, const T *cols, long ld, const T *h_last, const T *ghn,          \
                          long gn_n, long gn_j, const T *gout, long g_st, long gn, long gj,     \
                          T *dh, T *rec, const T *wht, T *dz, long ldz, long chunk, long H,     \
                          long N, long steps, int reverse, void *gemm) {                        \
    long hn = H * N, pending = 0;                                                               \
    const T *src = ghn;                                                                         \
    long rj = gn_j, rn = gn_n;                                                                  \
    for (long s = 0; s < steps; s++) {                                                          \
        long t = reverse ? s : steps - 1 - s, next = reverse ? t - 1 : t + 1;                   \
        const T *h = 0 <= next && next < steps ? cols + next * N : h_last;                      \
        long ldh = 0 <= next && next < steps ? ld : N;                                          \
        carried_plus_output_##S(src, rj, rn, gout + t * g_st, gn, gj, dh, H, N);                \
        T *zt = z + t * hn;                                                                     \
        for (long j = 0; j < H; j++)                                                            \
            for (long n = 0; n < N; n++) {                                                      \
                T d = dh[j * N + n], v = h[j * ldh + n];                                        \
                T q = d * v;                                                                    \
                q = q * v;                                                                      \
                zt[j * N + n] = d - q;                                                          \
            }                                                                                   \
        ((gemm_##S##_fn)gemm)(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_NO_TRANS, H, N, H, 1, wht, \
                              H, zt, N, 0, rec, N);                                             \
        for (long k = 0; k < hn; k++) rec[k] = flush_##S(rec[k]);                               \
        src = rec, rj = N, rn = 1;                                                              \
        pending = step_done(dz, ldz, z, hn, H, N, t, reverse, s == steps - 1, pending, chunk,   \
                            sizeof(T));                                                         \
    }                                                                                           \
    stream_done();                                                                              \
}

RNN_SEQUENCE(float, f32)
RNN_SEQUENCE(double, f64)

/* ---- the GRU's time loop ------------------------------------------------------------------------
 * deepgrad/ops/rnn.py: GRULayer's loops, as the LSTM's above (the Python loop's calls and float
 * operations, so its bits). A step's block (4H, N) holds the rows W_hn h + b_hn, r, z, n; n's
 * input side W_in x_t + b_in is in it before the loop. */
#define GRU_SEQUENCE(T, S)                                                                      \
/* Forward over `steps` steps (reverse: last first). w (3H, K): the rows of W_hn h + b_hn, and  \
 * of r and z halved (sigmoid through tanh); hp (steps, K, N): step t's GEMM input [h; x_t; 1], \
 * whose h rows the step before writes; a (steps, 4H, N) the blocks; h_last (H, N): the state   \
 * after the last step; out + t * out_st: step t's output (N, H), rows out_sn apart. With hx, \
 * every `chunk` steps the finished hp blocks are copied into hx (K rows, ldx apart), step t at \
 * column t * N. */                                                                             \
void gru_forward_seq_##S(const T *w, long K, T *hp, T *a, T *h_last, T *out, long out_st,       \
                         long out_sn, T *hx, long ldx, long chunk, long H, long N,              \
                         long steps, int reverse, void *gemm, void *tanh_loop,                  \
                         void *tanh_data) {                                                     \
    long hn = H * N, pending = 0;                                                               \
    for (long s = 0; s < steps; s++) {                                                          \
        long t = reverse ? steps - 1 - s : s, next = reverse ? t - 1 : t + 1;                   \
        T *at = a + t * 4 * hn, *ht = hp + t * K * N;                                           \
        ((gemm_##S##_fn)gemm)(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_NO_TRANS, 3 * H, N, K, 1,  \
                              w, K, ht, N, 0, at, N);                                           \
        T *ghn = at, *r = at + hn, *z = at + 2 * hn, *n = at + 3 * hn;                          \
        lstm_tanh_##S((ufunc_loop_fn)tanh_loop, tanh_data, r, r, 2 * hn);                       \
        for (long k = 0; k < 2 * hn; k++) r[k] = r[k] * (T)0.5 + (T)0.5;                        \
        for (long k = 0; k < hn; k++) n[k] = n[k] + r[k] * ghn[k];                              \
        lstm_tanh_##S((ufunc_loop_fn)tanh_loop, tanh_data, n, n, hn);                           \
        T *h = 0 <= next && next < steps ? hp + next * K * N : h_last;                          \
        for (long k = 0; k < hn; k++) {                                                         \
            T d = ht[k] - n[k];                                                                 \
            d = d * z[k];                                                                       \
            h[k] = n[k] + d;                                                                    \
        }                                                                                       \
        transpose_##S(h, N, out + t * out_st, out_sn, H, N);                                   \
        if (hx)                                                                                 \
            pending = step_done(hx, ldx, hp, K * N, K, N, t, !reverse, s == steps - 1, pending, \
                                chunk, sizeof(T));                                              \
    }                                                                                           \
    stream_done();                                                                              \
}                                                                                               \
                                                                                                \
/* Backpropagation through the steps of gru_forward_seq: each block's rows become the grads of \
 * (W_hn h + b_hn, r, z, n) in place. hp and h_last as the forward left them; the carried       \
 * gradient enters as ghn (N, H) with strides (gn_n, gn_j); step t's output gradient is         \
 * gout + t * g_st, strides (gn, gj). dh, dd (H, N) scratch; rec (H, N): the carried gradient,  \
 * wht @ rows :3H plus the direct path dh * z, flushed (deepgrad/ops/rnn.py: _Flush); wht       \
 * (H, 3H): W_hh's rows in the order (n, r, z), transposed and contiguous. Every `chunk` steps  \
 * the finished blocks are copied into dz (4H rows, ldz apart), step t at column t * N. */      \
void gru_backward_seq_##S(T *a, const T *hp, long K, const T *ghn_in, long gn_n, long gn_j,     \
                          const T *gout, long g_st, long gn, long gj, T *dh, T *dd, T *rec,     \
                          const T *wht, T *dz, long ldz, long chunk, long H, long N,            \
                          long steps, int reverse, void *gemm) {                                \
    long hn = H * N, pending = 0;                                                               \
    const T *src = ghn_in;                                                                      \
    long rj = gn_j, rn = gn_n;                                                                  \
    for (long s = 0; s < steps; s++) {                                                          \
        long t = reverse ? s : steps - 1 - s;                                                   \
        T *at = a + t * 4 * hn;                                                                 \
        T *ghn = at, *r = at + hn, *z = at + 2 * hn, *n = at + 3 * hn;                          \
        const T *hprev = hp + t * K * N;                                                        \
        carried_plus_output_##S(src, rj, rn, gout + t * g_st, gn, gj, dh, H, N);                \
        for (long k = 0; k < hn; k++) {                                                         \
            T d = dh[k], rk = r[k], zk = z[k], nk = n[k];                                       \
            T direct = d * zk;                                                                  \
            T sdr = rk - rk * rk, sdz = zk - zk * zk;                                           \
            T q = hprev[k] - nk;                                                                \
            q = q * d;                                                                          \
            z[k] = q * sdz;                                                                     \
            T dn = (T)1.0 - nk * nk;                                                            \
            dn = (d - direct) * dn;                                                             \
            n[k] = dn;                                                                          \
            T qr = dn * ghn[k];                                                                 \
            ghn[k] = dn * rk;                                                                   \
            r[k] = qr * sdr;                                                                    \
            dd[k] = direct;                                                                     \
        }                                                                                       \
        ((gemm_##S##_fn)gemm)(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_NO_TRANS, H, N, 3 * H, 1,  \
                              wht, 3 * H, at, N, 0, rec, N);                                    \
        for (long k = 0; k < hn; k++) rec[k] = flush_##S(rec[k] + dd[k]);                        \
        src = rec, rj = N, rn = 1;                                                              \
        pending = step_done(dz, ldz, a, 4 * hn, 4 * H, N, t, reverse, s == steps - 1, pending,  \
                            chunk, sizeof(T));                                                  \
    }                                                                                           \
    stream_done();                                                                              \
}

GRU_SEQUENCE(float, f32)
GRU_SEQUENCE(double, f64)

/* ---- batch normalization with batch statistics ----------------------------------------------
 * deepgrad/ops/nn_ops.py: BatchNorm in training, x (N, C, L) C-contiguous. Per channel: the mean
 * and the biased variance in two passes, then xhat = (x - mean) * invstd and y = xhat * w + b in
 * a third; backward the two sums of g and g * xhat, then the input gradient in one pass. The
 * NumPy path takes about ten passes over the array, each allocating its result. Sums go through
 * VL lanes and are totalled in double, so results equal the NumPy path's to rounding (they are
 * the more exact ones for large channels). */
#define BN_VEC(T, S)                                                                            \
/* sum over the runs x + n * stride, n < N, of L values each, of f(v) with f given by mode:     \
 * 0: v, 1: (v - shift)^2, 2: v * y[same place] */                                              \
static double bn_sum_##S(const T *restrict x, const T *restrict y, long N, long stride, long L, \
                         T shift, int mode) {                                                   \
    double total = 0;                                                                           \
    enum { VL = 64 / sizeof(T) };                                                               \
    for (long n = 0; n < N; n++) {                                                              \
        const T *p = x + n * stride, *q = y ? y + n * stride : 0;                               \
        vec_##S a0 = {0}, a1 = {0};                                                             \
        long l = 0;                                                                             \
        for (; l + 2 * VL <= L; l += 2 * VL) {                                                  \
            vec_##S v0, v1;                                                                     \
            memcpy(&v0, p + l, sizeof v0);                                                      \
            memcpy(&v1, p + l + VL, sizeof v1);                                                 \
            if (mode == 1) {                                                                    \
                v0 -= shift; v1 -= shift;                                                       \
                v0 *= v0; v1 *= v1;                                                             \
            } else if (mode == 2) {                                                             \
                vec_##S w0, w1;                                                                 \
                memcpy(&w0, q + l, sizeof w0);                                                  \
                memcpy(&w1, q + l + VL, sizeof w1);                                             \
                v0 *= w0; v1 *= w1;                                                             \
            }                                                                                   \
            a0 += v0; a1 += v1;                                                                 \
        }                                                                                       \
        a0 += a1;                                                                               \
        double s = 0;                                                                           \
        for (int k = 0; k < VL; k++) s += a0[k];                                                \
        for (; l < L; l++) {                                                                    \
            T v = p[l];                                                                         \
            if (mode == 1) { v -= shift; v *= v; }                                              \
            else if (mode == 2) v *= q[l];                                                      \
            s += v;                                                                             \
        }                                                                                       \
        total += s;                                                                             \
    }                                                                                           \
    return total;                                                                               \
}                                                                                               \
                                                                                                \
/* Channels are independent: both passes split into parts of whole channels (run_parts), the    \
 * same bits in any split. */                                                                   \
typedef struct {                                                                                \
    const T *x, *w, *b, *g, *xhat_in; long N, C, L; double eps;                                 \
    T *mean, *var, *invstd, *xhat, *y, *gsum, *gxsum, *gx; long parts;                          \
} bn_ctx_##S;                                                                                   \
static void bn_forward_channels_##S(const bn_ctx_##S *k, long c0, long c1);                     \
static void bn_backward_channels_##S(const bn_ctx_##S *k, long c0, long c1);                    \
static void bn_forward_part_##S(void *ctx, long i) {                                            \
    const bn_ctx_##S *k = ctx;                                                                  \
    bn_forward_channels_##S(k, part_start(k->C, k->parts, i, 1),                                \
                            part_start(k->C, k->parts, i + 1, 1));                              \
}                                                                                               \
static void bn_backward_part_##S(void *ctx, long i) {                                           \
    const bn_ctx_##S *k = ctx;                                                                  \
    bn_backward_channels_##S(k, part_start(k->C, k->parts, i, 1),                               \
                             part_start(k->C, k->parts, i + 1, 1));                             \
}                                                                                               \
static long bn_parts_##S(long N, long C, long L) {                                              \
    long parts = parts_for(N * C * L);                                                          \
    return parts < C ? parts : C;                                                               \
}                                                                                               \
                                                                                                \
/* mean, var (biased) and invstd = 1 / sqrt(var + eps) per channel; xhat and y as above (w, b   \
 * may be NULL: 1 and 0) */                                                                     \
void batch_norm_forward_##S(const T *restrict x, long N, long C, long L, const T *w,            \
                            const T *b, double eps, T *restrict mean, T *restrict var,          \
                            T *restrict invstd, T *restrict xhat, T *restrict y) {              \
    bn_ctx_##S k = {x, w, b, 0, 0, N, C, L, eps, mean, var, invstd, xhat, y, 0, 0, 0,           \
                    bn_parts_##S(N, C, L)};                                                     \
    run_parts(bn_forward_part_##S, &k, k.parts);                                                \
}                                                                                               \
static void bn_forward_channels_##S(const bn_ctx_##S *k, long c0, long c1) {                    \
    const T *restrict x = k->x, *w = k->w, *b = k->b;                                           \
    long N = k->N, C = k->C, L = k->L;                                                          \
    double eps = k->eps;                                                                        \
    T *restrict mean = k->mean, *restrict var = k->var, *restrict invstd = k->invstd;           \
    T *restrict xhat = k->xhat, *restrict y = k->y;                                             \
    double m = (double)N * (double)L;                                                           \
    for (long c = c0; c < c1; c++) {                                                            \
        const T *xc = x + c * L;                                                                \
        T mu = (T)(bn_sum_##S(xc, 0, N, C * L, L, 0, 0) / m);                                    \
        T v = (T)(bn_sum_##S(xc, 0, N, C * L, L, mu, 1) / m);                                    \
        T is = (T)(1.0 / sqrt((double)v + eps));                                                \
        T scale = w ? w[c] : (T)1, shift = b ? b[c] : (T)0;                                     \
        mean[c] = mu;                                                                           \
        var[c] = v;                                                                             \
        invstd[c] = is;                                                                         \
        for (long n = 0; n < N; n++) {                                                          \
            const T *p = xc + n * C * L;                                                        \
            T *h = xhat + (n * C + c) * L, *o = y + (n * C + c) * L;                            \
            for (long l = 0; l < L; l++) {                                                      \
                T d = (p[l] - mu) * is;                                                         \
                h[l] = d;                                                                       \
                o[l] = d * scale + shift;                                                       \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* gsum = sum of g, gxsum = sum of g * xhat per channel; with gx, the input gradient            \
 * gx = (g - gsum / m - xhat * gxsum / m) * invstd * w (w may be NULL: 1) */                    \
void batch_norm_backward_##S(const T *restrict g, const T *restrict xhat, long N, long C,       \
                             long L, const T *restrict invstd, const T *w,                      \
                             T *restrict gsum, T *restrict gxsum, T *gx) {                      \
    bn_ctx_##S k = {0, w, 0, g, xhat, N, C, L, 0, 0, 0, (T *)invstd, 0, 0, gsum, gxsum, gx,     \
                    bn_parts_##S(N, C, L)};                                                     \
    run_parts(bn_backward_part_##S, &k, k.parts);                                               \
}                                                                                               \
static void bn_backward_channels_##S(const bn_ctx_##S *k, long c0, long c1) {                   \
    const T *restrict g = k->g, *restrict xhat = k->xhat_in, *restrict invstd = k->invstd;      \
    const T *w = k->w;                                                                          \
    long N = k->N, C = k->C, L = k->L;                                                          \
    T *restrict gsum = k->gsum, *restrict gxsum = k->gxsum, *gx = k->gx;                        \
    double m = (double)N * (double)L;                                                           \
    for (long c = c0; c < c1; c++) {                                                            \
        const T *gc = g + c * L, *hc = xhat + c * L;                                            \
        double s = bn_sum_##S(gc, 0, N, C * L, L, 0, 0);                                        \
        double sx = bn_sum_##S(gc, hc, N, C * L, L, 0, 2);                                      \
        gsum[c] = (T)s;                                                                         \
        gxsum[c] = (T)sx;                                                                       \
        if (!gx) continue;                                                                      \
        T a = (T)(s / m), bx = (T)(sx / m), k = invstd[c] * (w ? w[c] : (T)1);                  \
        for (long n = 0; n < N; n++) {                                                          \
            const T *gp = gc + n * C * L, *hp = hc + n * C * L;                                 \
            T *o = gx + (n * C + c) * L;                                                        \
            for (long l = 0; l < L; l++) o[l] = (gp[l] - a - hp[l] * bx) * k;                   \
        }                                                                                       \
    }                                                                                           \
}

BN_VEC(float, f32)
BN_VEC(double, f64)

/* ---- rows: a bias along rows, sums down columns, cross-entropy, the embedding's gradient -----
 * NumPy runs these over an (N, C) array with few columns (char_lstm's 2048 x 65 logits) as one
 * inner-loop call per row, which costs more than the arithmetic. Here they are one pass, with
 * NumPy's float operations in NumPy's order (its own maximum, exp and add loops where it has
 * them), so the same bits. */
#define ROW_KERNELS(T, S)                                                                       \
                                                                                                \
/* y[r, k] += b[k] in place (np.add(y, b, out=y) over (rows, cols)) */                          \
static void add_rows_one_##S(T *restrict y, const T *restrict b, long rows, long cols) {        \
    for (long r = 0; r < rows; r++) {                                                           \
        T *yr = y + r * cols;                                                                   \
        for (long k = 0; k < cols; k++) yr[k] = yr[k] + b[k];                                   \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* out[k] = sum over rows of g[r, k], from 0 and row after row: the order of g.sum(axis=0) on  \
 * a C-contiguous (rows, cols) array with cols > 1 (a single column NumPy sums pairwise) */     \
static void sum_rows_one_##S(const T *restrict g, long rows, long cols, long ld,                \
                             T *restrict out) {                                                 \
    for (long k = 0; k < cols; k++) out[k] = 0;                                                 \
    for (long r = 0; r < rows; r++) {                                                           \
        const T *gr = g + r * ld;                                                               \
        for (long k = 0; k < cols; k++) out[k] = out[k] + gr[k];                                \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* Cross-entropy forward over rows of x (N, C) (deepgrad/ops/nn_ops.py: CrossEntropy): z = x - \
 * max(row), e = exp(z), s = sum(e), and with y (int64 targets) zy[r] = z[r, y[r]]. z may be   \
 * NULL when it is not kept (then it is formed in e). The row max, exp and sum are NumPy's    \
 * loops, called as np.maximum.reduce, np.exp and np.add.reduce call them; rows go in blocks   \
 * that stay in L1. */                                                                          \
static void softmax_rows_one_##S(const T *restrict x, long N, long C, T *z, T *e,               \
                                 T *restrict s, const int64_t *restrict y,                      \
                                 T *restrict zy, void *max_loop, void *max_data,                \
                                 void *exp_loop, void *exp_data, void *add_loop,                \
                                 void *add_data) {                                              \
    long block = C >= 2048 ? 1 : 2048 / C;                                                      \
    long reduce_steps[3] = {0, sizeof(T), 0}, map_steps[2] = {sizeof(T), sizeof(T)};           \
    for (long r0 = 0; r0 < N; r0 += block) {                                                    \
        long rows = N - r0 < block ? N - r0 : block;                                            \
        T *zb = (z ? z : e) + r0 * C, *eb = e + r0 * C;                                         \
        for (long r = r0; r < r0 + rows; r++) {                                                 \
            const T *xr = x + r * C;                                                            \
            T *zr = (z ? z : e) + r * C;                                                        \
            T m = xr[0];                                                                        \
            if (C > 1) {                                                                        \
                char *args[3] = {(char *)&m, (char *)(xr + 1), (char *)&m};                     \
                long n = C - 1;                                                                 \
                ((ufunc_loop_fn)max_loop)(args, &n, reduce_steps, max_data);                    \
            }                                                                                   \
            for (long k = 0; k < C; k++) zr[k] = xr[k] - m;                                     \
            if (y) zy[r] = zr[y[r]];                                                            \
        }                                                                                       \
        char *args[2] = {(char *)zb, (char *)eb};                                               \
        long n = rows * C;                                                                      \
        ((ufunc_loop_fn)exp_loop)(args, &n, map_steps, exp_data);                               \
        for (long r = r0; r < r0 + rows; r++) {                                                 \
            s[r] = 0;                                                                           \
            char *sargs[3] = {(char *)(s + r), (char *)(e + r * C), (char *)(s + r)};           \
            long c = C;                                                                         \
            ((ufunc_loop_fn)add_loop)(sargs, &c, reduce_steps, add_data);                       \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* Cross-entropy backward: gx (N, C) = e * q[r] along each row, then gx[r, y[r]] -= hit[r*hs] \
 * (hs = 0: one value for every row) */                                                         \
static void softmax_grad_one_##S(const T *restrict e, const T *restrict q, long N, long C,      \
                                 const int64_t *restrict y, const T *restrict hit,              \
                                 long hs, T *restrict gx) {                                     \
    for (long r = 0; r < N; r++) {                                                              \
        const T *er = e + r * C;                                                                \
        T *gr = gx + r * C, qr = q[r];                                                          \
        for (long k = 0; k < C; k++) gr[k] = er[k] * qr;                                        \
        gr[y[r]] = gr[y[r]] - hit[r * hs];                                                      \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* The embedding's weight gradient: gw[idx[k]] += g[k] for k in order (np.add.at's order), rows \
 * of d; gw starts zeroed */                                                                    \
void embedding_backward_##S(const T *restrict g, const int64_t *restrict idx, long n, long d,  \
                            T *restrict gw) {                                                   \
    for (long k = 0; k < n; k++) {                                                              \
        T *row = gw + idx[k] * d;                                                               \
        const T *gk = g + k * d;                                                                \
        for (long j = 0; j < d; j++) row[j] = row[j] + gk[j];                                   \
    }                                                                                           \
}

ROW_KERNELS(float, f32)
ROW_KERNELS(double, f64)

/* The row kernels above in parts (run_parts): add_rows and the cross-entropy's split their rows
 * (each row's operations and NumPy's elementwise exp are the same in any part), sum_rows its
 * columns (each column still sums its rows in order). */
#define PARTED_ROWS(T, S)                                                                       \
ROWS_KERNEL(T, S, add_rows)                                                                     \
                                                                                                \
typedef struct { const T *g; long rows, cols; T *out; long parts; } sum_rows_ctx_##S;           \
                                                                                                \
static void sum_rows_part_##S(void *ctx, long i) {                                              \
    sum_rows_ctx_##S *c = ctx;                                                                  \
    long lo = part_start(c->cols, c->parts, i, 16), hi = part_start(c->cols, c->parts, i + 1, 16); \
    if (hi > lo) sum_rows_one_##S(c->g + lo, c->rows, hi - lo, c->cols, c->out + lo);           \
}                                                                                               \
                                                                                                \
void sum_rows_##S(const T *g, long rows, long cols, T *out) {                                   \
    sum_rows_ctx_##S c = {g, rows, cols, out, cols >= 32 ? parts_for(rows * cols) : 1};         \
    run_parts(sum_rows_part_##S, &c, c.parts);                                                  \
}                                                                                               \
                                                                                                \
typedef struct {                                                                                \
    const T *x;                                                                                 \
    long N, C;                                                                                  \
    T *z, *e, *s;                                                                               \
    const int64_t *y;                                                                           \
    T *zy;                                                                                      \
    void *loops[6];                                                                             \
    long parts;                                                                                 \
} softmax_ctx_##S;                                                                              \
                                                                                                \
static void softmax_rows_part_##S(void *ctx, long i) {                                          \
    softmax_ctx_##S *c = ctx;                                                                   \
    long lo = part_start(c->N, c->parts, i, 1), hi = part_start(c->N, c->parts, i + 1, 1);      \
    long at = lo * c->C;                                                                        \
    softmax_rows_one_##S(c->x + at, hi - lo, c->C, c->z ? c->z + at : 0, c->e + at, c->s + lo,  \
                         c->y ? c->y + lo : 0, c->y ? c->zy + lo : 0, c->loops[0],              \
                         c->loops[1], c->loops[2], c->loops[3], c->loops[4], c->loops[5]);      \
}                                                                                               \
                                                                                                \
void softmax_rows_##S(const T *x, long N, long C, T *z, T *e, T *s, const int64_t *y, T *zy,    \
                      void *max_loop, void *max_data, void *exp_loop, void *exp_data,           \
                      void *add_loop, void *add_data) {                                         \
    softmax_ctx_##S c = {x, N, C, z, e, s, y, zy, {max_loop, max_data, exp_loop, exp_data,      \
                         add_loop, add_data}, parts_for(N * C)};                                \
    run_parts(softmax_rows_part_##S, &c, c.parts);                                              \
}                                                                                               \
                                                                                                \
typedef struct {                                                                                \
    const T *e, *q;                                                                             \
    long N, C;                                                                                  \
    const int64_t *y;                                                                           \
    const T *hit;                                                                               \
    long hs;                                                                                    \
    T *gx;                                                                                      \
    long parts;                                                                                 \
} softmax_grad_ctx_##S;                                                                         \
                                                                                                \
static void softmax_grad_part_##S(void *ctx, long i) {                                          \
    softmax_grad_ctx_##S *c = ctx;                                                              \
    long lo = part_start(c->N, c->parts, i, 1), hi = part_start(c->N, c->parts, i + 1, 1);      \
    softmax_grad_one_##S(c->e + lo * c->C, c->q + lo, hi - lo, c->C, c->y + lo,                 \
                         c->hit + lo * c->hs, c->hs, c->gx + lo * c->C);                        \
}                                                                                               \
                                                                                                \
void softmax_grad_##S(const T *e, const T *q, long N, long C, const int64_t *y, const T *hit,   \
                      long hs, T *gx) {                                                         \
    softmax_grad_ctx_##S c = {e, q, N, C, y, hit, hs, gx, parts_for(N * C)};                    \
    run_parts(softmax_grad_part_##S, &c, c.parts);                                              \
}

PARTED_ROWS(float, f32)
PARTED_ROWS(double, f64)

/* ---- a product in row parts ---------------------------------------------------------------------
 * c (M, N) = op(a) @ op(b) + beta c (deepgrad/_native/mkl.py: _gemm), each part a block of c's
 * rows through MKL's GEMM on its own thread (threads_local 1). mkl.py sends the products whose
 * left operand is stored transposed, as a layer's weight gradient g^T @ x is, with enough rows
 * and columns: MKL's two threads on the whole product ran them slower than two independent
 * halves, as much as 1.16x (mlp_mnist's 512 x 128 by 128 x 512: 542 against 468 us). Each
 * element is one of MKL's sums over k, the same whatever the rows beside it in its block
 * (tests/test_parallel.py). Returns -1 with fewer than 2 parts (then the caller runs it whole).
 * linear_rows below runs the same parts, each followed by its rows' epilogue. */
#define GEMM_ROWS(T, S)                                                                         \
typedef struct {                                                                                \
    gemm_##S##_fn gemm;                                                                         \
    threads_local_fn threads_local;                                                             \
    const T *a, *b;                                                                             \
    T *c;                                                                                       \
    T beta;                                                                                     \
    long M, N, K, lda, ldb, ldc, parts;                                                         \
    int ta, tb;                                                                                 \
} gemm_rows_ctx_##S;                                                                            \
                                                                                                \
static void gemm_rows_part_##S(void *ctx, long i) {                                             \
    gemm_rows_ctx_##S *c = ctx;                                                                 \
    long lo = part_start(c->M, c->parts, i, 8), hi = part_start(c->M, c->parts, i + 1, 8);      \
    if (hi == lo) return;                                                                       \
    int before = c->threads_local(1);                                                           \
    c->gemm(CBLAS_ROW_MAJOR, c->ta ? CBLAS_TRANS : CBLAS_NO_TRANS,                              \
            c->tb ? CBLAS_TRANS : CBLAS_NO_TRANS, (int)(hi - lo), (int)c->N, (int)c->K, 1,      \
            c->ta ? c->a + lo : c->a + lo * c->lda, (int)c->lda, c->b, (int)c->ldb, c->beta,    \
            c->c + lo * c->ldc, (int)c->ldc);                                                   \
    c->threads_local(before);                                                                   \
}                                                                                               \
                                                                                                \
int gemm_rows_##S(void *gemm, void *threads_local, int ta, int tb, long M, long N, long K,      \
                  const T *a, long lda, const T *b, long ldb, T beta, T *c, long ldc) {         \
    long parts = parallel_parts;                                                                \
    if (parts < 2) return -1;                                                                   \
    gemm_rows_ctx_##S x = {(gemm_##S##_fn)gemm, (threads_local_fn)threads_local, a, b, c, beta, \
                           M, N, K, lda, ldb, ldc, parts, ta, tb};                              \
    run_parts(gemm_rows_part_##S, &x, parts);                                                   \
    return 0;                                                                                   \
}

GEMM_ROWS(float, f32)
GEMM_ROWS(double, f64)

/* ---- a Linear layer in row parts ---------------------------------------------------------------
 * y (M, N) = x (M, K) @ w^T + b, then ReLU if relu (deepgrad/ops/linalg.py: Linear): each part
 * takes a block of rows, runs MKL's GEMM for them on its own thread (threads_local 1), then adds
 * the bias and applies the ReLU while the block is still in that core's cache. MKL's two threads
 * on the whole product, then the epilogue on one core over memory, took 3.62 ms on mlp_mnist's
 * 1000-row inference layer (1000 x 784 by 784 x 512) against 3.44 ms this way (2 parts; medians
 * of 30 blocks). Rows are independent, so the parts need no combining. Returns -1 without a
 * parallel loop or with fewer than 2 parts to make (then the caller does it whole). */
#define LINEAR_ROWS(T, S)                                                                       \
typedef struct {                                                                                \
    gemm_rows_ctx_##S rows; /* the product, x @ w^T into y */                                   \
    const T *b;                                                                                 \
    int relu;                                                                                   \
} linear_ctx_##S;                                                                               \
                                                                                                \
static void linear_part_##S(void *ctx, long i) {                                                \
    linear_ctx_##S *c = ctx;                                                                    \
    const gemm_rows_ctx_##S *r = &c->rows;                                                      \
    long lo = part_start(r->M, r->parts, i, 8), hi = part_start(r->M, r->parts, i + 1, 8);      \
    if (hi == lo) return;                                                                       \
    gemm_rows_part_##S(&c->rows, i);                                                            \
    T *y = r->c + lo * r->N;                                                                    \
    if (c->b && c->relu)                                                                        \
        bias_relu_one_##S(y, c->b, hi - lo, r->N);                                              \
    else if (c->b)                                                                              \
        add_rows_one_##S(y, c->b, hi - lo, r->N);                                               \
    else if (c->relu)                                                                           \
        relu_forward_one_##S(y, y, (hi - lo) * r->N);                                           \
}                                                                                               \
                                                                                                \
int linear_rows_##S(void *gemm, void *threads_local, const T *x, const T *w, long ldw,          \
                    int transw, const T *b, int relu, T *y, long M, long N, long K) {           \
    long parts = parallel_parts;                                                                \
    if (!parallel_loop || parts < 2 || M < 16 * parts) return -1;                               \
    linear_ctx_##S c = {{(gemm_##S##_fn)gemm, (threads_local_fn)threads_local, x, w, y, 0, M,   \
                         N, K, K, ldw, N, parts, 0, transw}, b, relu};                          \
    run_parts(linear_part_##S, &c, parts);                                                      \
    return 0;                                                                                   \
}

LINEAR_ROWS(float, f32)
LINEAR_ROWS(double, f64)

/* ---- whether every value is finite ---------------------------------------------------------------
 * deepgrad/ops/conv.py checks the Winograd paths' results with it: their transforms add and
 * subtract, so one infinite input or weight turns whole tiles into NaN where the direct sums
 * (and PyTorch) give inf, and a result that is not all finite is recomputed directly. x - x is
 * 0 for a finite x and NaN for inf or NaN; the comparisons vectorise, a sum would not. */
#define ALL_FINITE(T, S)                                                                        \
typedef struct { const T *x; long n, parts; int *bad; } finite_ctx_##S;                         \
                                                                                                \
static void all_finite_part_##S(void *ctx, long i) {                                            \
    finite_ctx_##S *c = ctx;                                                                    \
    long lo = part_start(c->n, c->parts, i, 16), hi = part_start(c->n, c->parts, i + 1, 16);    \
    int bad = 0;                                                                                \
    for (long k = lo; k < hi; k++) bad |= c->x[k] - c->x[k] != 0;                               \
    c->bad[i] = bad;                                                                            \
}                                                                                               \
                                                                                                \
int all_finite_##S(const T *x, long n) {                                                        \
    long parts = parts_for(n);                                                                  \
    int bad[parts];                                                                             \
    finite_ctx_##S c = {x, n, parts, bad};                                                      \
    run_parts(all_finite_part_##S, &c, parts);                                                  \
    for (long i = 0; i < parts; i++)                                                            \
        if (bad[i]) return 0;                                                                   \
    return 1;                                                                                   \
}

ALL_FINITE(float, f32)
ALL_FINITE(double, f64)

/* ---- a narrow Linear layer: a classifier's head ------------------------------------------------
 * y (M, N) = x (M, K) @ w^T + b, then ReLU if relu, for few output features (deepgrad/ops/
 * linalg.py: Linear). MKL ran mlp_mnist's head (1000 x 512 by 512 x 10) at 19 GFLOP/s: a GEMM
 * blocked for wide outputs packs x, which is most of the work when each of its rows meets only
 * ten columns. Here w^T is packed once into column tiles of NARROW_TILE (zero-padded), and each
 * part takes a block of rows: per NARROW_ROWS rows, per tile, a register tile of sums read
 * straight from x's rows, then the bias and the ReLU. Each output is one chain of fused
 * multiply-adds in the order of k, then the bias, whatever its part or tile: the same bits on
 * any number of threads, and equal to MKL's to rounding. Float32 on builds with AVX2 and FMA. */
#define NARROW_TILE 16 /* output columns per tile: two vectors */
#define NARROW_ROWS 6  /* rows per tile: 12 sums and two columns of w^T in 14 registers */

/* whether this build has linear_narrow_f32 */
int linear_narrow_available(void) { return HAVE_FMA8; }

#if HAVE_FMA8
typedef struct {
    const float *x, *wp, *b;
    float *y;
    long M, N, K, ldx, parts;
    int relu;
} narrow_ctx;

/* rows r0... (n of them, at most NARROW_ROWS; a short tile repeats its last row's reads) by
 * column tile j0 of the packed w^T, of `vecs` vectors (a constant: the loop is specialized) */
static inline __attribute__((always_inline)) void narrow_tile(const narrow_ctx *s, long r0,
                                                              long n, long j0, const int vecs) {
    const float *x0 = s->x + r0 * s->ldx, *wp = s->wp + j0 * s->K;
    const float *x1 = x0 + (n > 1) * s->ldx, *x2 = x0 + (n > 2 ? 2 : n - 1) * s->ldx;
    const float *x3 = x0 + (n > 3 ? 3 : n - 1) * s->ldx, *x4 = x0 + (n > 4 ? 4 : n - 1) * s->ldx;
    const float *x5 = x0 + (n > 5 ? 5 : n - 1) * s->ldx;
    v8_f32 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};
    v8_f32 c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};
    for (long k = 0; k < s->K; k++, wp += 8 * vecs) {
        v8_f32 b0 = *(const v8_f32 *)wp, b1 = vecs == 2 ? *(const v8_f32 *)(wp + 8) : b0, a;
#define NARROW_ROW(r)                                                                           \
    a = SPLAT8(x##r[k]), c##r##0 = fma8(a, b0, c##r##0);                                        \
    if (vecs == 2) c##r##1 = fma8(a, b1, c##r##1);
        NARROW_ROW(0) NARROW_ROW(1) NARROW_ROW(2) NARROW_ROW(3) NARROW_ROW(4) NARROW_ROW(5)
#undef NARROW_ROW
    }
    v8_f32 acc[NARROW_ROWS][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                                  {c30, c31}, {c40, c41}, {c50, c51}};
    long width = s->N - j0 < NARROW_TILE ? s->N - j0 : NARROW_TILE;
    float bias[NARROW_TILE] = {0};
    if (s->b) memcpy(bias, s->b + j0, width * 4);
    for (long r = 0; r < n; r++) {
        float out[NARROW_TILE];
        for (int v = 0; v < vecs; v++) {
            v8_f32 y = acc[r][v];
            if (s->b) y = y + *(const v8u_f32 *)(bias + 8 * v);
            if (s->relu) y = (v8_f32)((v8_i32)y & ~(y <= SPLAT8(0.0f))); /* x <= 0 ? 0 : x */
            *(v8u_f32 *)(out + 8 * v) = y;
        }
        memcpy(s->y + (r0 + r) * s->N + j0, out, width * 4);
    }
}

/* a part's rows; a tile of at most 8 columns (the last) takes one vector */
static void narrow_part(void *ctx, long i) {
    narrow_ctx *s = ctx;
    long lo = part_start(s->M, s->parts, i, 1), hi = part_start(s->M, s->parts, i + 1, 1);
    for (long r0 = lo; r0 < hi; r0 += NARROW_ROWS) {
        long n = hi - r0 < NARROW_ROWS ? hi - r0 : NARROW_ROWS;
        for (long j0 = 0; j0 < s->N; j0 += NARROW_TILE)
            if (s->N - j0 > 8)
                narrow_tile(s, r0, n, j0, 2);
            else
                narrow_tile(s, r0, n, j0, 1);
    }
}

/* x (M, K), rows ldx apart; w (N, K) with element (n, k) at w[n * wn + k * wk]; b (N) or NULL;
 * y (M, N). Returns 0, or -1 if the packed w^T's memory could not be had (nothing written). */
int linear_narrow_f32(const float *x, long ldx, const float *w, long wn, long wk, const float *b,
                      int relu, float *y, long M, long N, long K) {
    long tiles = (N + NARROW_TILE - 1) / NARROW_TILE;
    float *wp = aligned_alloc(64, (tiles * K * NARROW_TILE * sizeof(float) + 63) / 64 * 64);
    if (!wp) return -1;
    for (long j0 = 0; j0 < N; j0 += NARROW_TILE) {
        long width = N - j0 > 8 ? NARROW_TILE : 8; /* the tile's packed columns */
        for (long k = 0; k < K; k++)
            for (long c = 0; c < width; c++)
                wp[j0 * K + k * width + c] = j0 + c < N ? w[(j0 + c) * wn + k * wk] : 0.0f;
    }
    narrow_ctx c = {x, wp, b, y, M, N, K, ldx, parts_for(M * K), relu};
    long groups = (M + NARROW_ROWS - 1) / NARROW_ROWS;
    if (c.parts > groups) c.parts = groups;
    run_parts(narrow_part, &c, c.parts);
    free(wp);
    return 0;
}
#endif /* HAVE_FMA8 */
