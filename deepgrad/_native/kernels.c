/* deepgrad's optional native kernels.
 *
 * Each kernel fuses a chain of elementwise NumPy calls into one pass over memory. It performs
 * exactly the float operations of the NumPy code it stands in for, in the same order and at
 * the same precision, and is built with -ffp-contract=off (no fused multiply-adds), so the
 * results are the NumPy path's bit for bit; the tests compare the two with array_equal.
 * Transcendental functions stay in NumPy: its tanh and ours would round differently.
 *
 * Every kernel comes in float32 (suffix _f32) and float64 (_f64). Strides are in elements.
 */
#include <stdint.h>
#include <string.h>
#include <math.h>

#define BLOCK 512  /* elements per block of the optimizer kernels */
#define TILE 8     /* rows per tile of a transposed copy */

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

#define KERNELS(T, S)                                                                           \
                                                                                                \
/* LSTM forward, after tanh of the pre-activations a (4H, N), gates (i, f, o, g) with i, f, o  \
 * pre-halved: sigmoid = 0.5 * tanh + 0.5 for i, f, o, then the cell c = f * c_prev + i * g. */ \
void lstm_gates_##S(T *restrict a, const T *restrict c_prev, T *restrict c, long hn) {         \
    for (long k = 0; k < 3 * hn; k++) a[k] = a[k] * (T)0.5 + (T)0.5;                           \
    const T *i = a, *f = a + hn, *g = a + 3 * hn;                                              \
    for (long k = 0; k < hn; k++) {                                                             \
        T fc = f[k] * c_prev[k];                                                                \
        T ig = i[k] * g[k];                                                                     \
        c[k] = fc + ig;                                                                         \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* LSTM forward, after tanh of the cell: h = o * tanh(c) into h (H, N), and its transpose into \
 * the layer's output rows out[n, j] (row stride out_sn), TILE rows at a time so the writes    \
 * stream along TILE rows at once. */                                                          \
void lstm_output_##S(const T *restrict o, const T *restrict tc, T *restrict h,                  \
                     T *restrict out, long H, long N, long out_sn) {                            \
    for (long k = 0; k < H * N; k++) h[k] = o[k] * tc[k];                                       \
    for (long n0 = 0; n0 < N; n0 += TILE) {                                                     \
        long n1 = n0 + TILE < N ? n0 + TILE : N;                                                \
        for (long j = 0; j < H; j++)                                                            \
            for (long n = n0; n < n1; n++) out[n * out_sn + j] = h[j * N + n];                  \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* One step of LSTM backpropagation through time, before the GEMM with W_hh.                   \
 * In: a (4H, N) the gate activations (i, f, o, g), overwritten with the gradients of their    \
 * pre-activations; tc = tanh(c) and c_prev (H, N); the incoming dh = dh_rec[j*rj + n*rn] +    \
 * gout[n*gn + j*gj], gathered first into the scratch dh (H, N) (a tiled transpose: gout is   \
 * the (N, H) output gradient); dc (H, N) the carried cell gradient, updated in place. With   \
 * flush, dh_rec (then contiguous) and dc are first flushed like the NumPy path's carry after \
 * its GEMM. */                                                                                 \
void lstm_backward_step_##S(T *restrict a, const T *restrict tc, const T *restrict c_prev,      \
                            T *restrict dh_rec, long rj, long rn, const T *restrict gout,       \
                            long gn, long gj, T *restrict dc, T *restrict dh, long H, long N,   \
                            int flush) {                                                        \
    long hn = H * N;                                                                            \
    T *ai = a, *af = a + hn, *ao = a + 2 * hn, *ag = a + 3 * hn;                                \
    if (flush) {                                                                                \
        for (long k = 0; k < hn; k++) dh_rec[k] = flush_##S(dh_rec[k]);                         \
        for (long k = 0; k < hn; k++) dc[k] = flush_##S(dc[k]);                                 \
    }                                                                                           \
    for (long n0 = 0; n0 < N; n0 += TILE) {                                                     \
        long n1 = n0 + TILE < N ? n0 + TILE : N;                                                \
        for (long j = 0; j < H; j++)                                                            \
            for (long n = n0; n < n1; n++)                                                      \
                dh[j * N + n] = dh_rec[j * rj + n * rn] + gout[n * gn + j * gj];                \
    }                                                                                           \
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
/* Activation gradients from the saved output y, in one pass (deepgrad/ops/elementwise.py). */ \
void tanh_backward_##S(const T *restrict y, const T *restrict g, T *restrict out, long n) {    \
    for (long k = 0; k < n; k++) out[k] = g[k] * ((T)1 - y[k] * y[k]);                         \
}                                                                                               \
                                                                                                \
void sigmoid_backward_##S(const T *restrict y, const T *restrict g, T *restrict out, long n) { \
    for (long k = 0; k < n; k++) out[k] = ((T)1 - y[k]) * y[k] * g[k];                          \
}                                                                                               \
                                                                                                \
/* the mask y > 0 as 1 or 0, times g: NaN in y passes no gradient; g * 0 keeps its sign */      \
void relu_backward_##S(const T *restrict y, const T *restrict g, T *restrict out, long n) {    \
    for (long k = 0; k < n; k++) out[k] = g[k] * (y[k] > 0 ? (T)1 : (T)0);                      \
}                                                                                               \
                                                                                                \
/* The optimizer kernels work through the parameters in blocks that stay in L1, with one      \
 * simple (vectorisable) loop per NumPy call of the reference update and the branches outside \
 * the loops. */                                                                                \
                                                                                                \
/* SGD (deepgrad/optim/sgd.py: SGD._update with l2_gradient). flags: 1 weight decay,           \
 * 2 maximize, 4 momentum, 8 first step (fresh buffer), 16 dampening, 32 nesterov. */           \
void sgd_update_##S(T *restrict p, const T *restrict d, T *restrict buf, long n, T neg_lr,     \
                    T wd, T mom, T damp, int flags) {                                           \
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
void adam_update_##S(T *restrict p, const T *restrict d, T *restrict m, T *restrict v,          \
                     T *restrict vmax, long n, T w1, T b2, T omb2, T eps, T wd, T decay,        \
                     T bc2_sqrt, T neg_step, int flags) {                                       \
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

/* ---- convolution ----------------------------------------------------------------------------
 * Direct 2-d convolution for layers with few input channels times taps (LeNet's), where a GEMM
 * over a patch matrix has too few rows for BLAS to run well. Unlike the kernels above these
 * sum in their own order, so results match the NumPy path to rounding, not bit for bit; they
 * may contract multiplies and adds into FMAs. */
#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")

#define CONV_OB 8 /* output channels per register block */

/* a register of VL lanes, written with GCC's vector extensions so the block of accumulators
 * below stays in registers (on AVX2 the compiler splits each into two halves) */
typedef float vec_f32 __attribute__((vector_size(64)));
typedef double vec_f64 __attribute__((vector_size(64)));

#define CONV_KERNELS(T, S, VL)                                                                  \
typedef struct {                                                                                \
    const T *xp; long N, C, Hp, Wp; const T *w; long O, kh, kw; const T *bias; T *y;            \
    long OH, OW, sh, sw, dh, dw;                                                                \
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
    long wo = C * kh * kw; /* weight stride between output channels */                         \
    long rs = sh * Wp;     /* input stride between the block's two output rows */              \
    for (long n = n0; n < n1; n++)                                                              \
    for (long o0 = 0; o0 < O; o0 += obk)                                                        \
    for (long oy = 0; oy < OH; oy += 2)                                                         \
    for (long x0 = 0; x0 < OW; x0 += VL) {                                                      \
        /* two output rows per block: each weight broadcast feeds two FMAs, which keeps the   \
         * loads (one per FMA with a memory operand) from being the bottleneck; a second row  \
         * past the last is computed from the slack and dropped */                             \
        vec_##S acc[CONV_OB], acc2[CONV_OB];                                                    \
        for (int b = 0; b < obk; b++) acc[b] = acc2[b] = (vec_##S){0};                          \
        for (long c = 0; c < C; c++)                                                            \
        for (long i = 0; i < kh; i++) {                                                         \
            const T *xr = xp + ((n * C + c) * Hp + oy * sh + i * dh) * Wp + x0 * sw;            \
            const T *wr = w + (o0 * C + c) * kh * kw + i * kw;                                  \
            for (long j = 0; j < kw; j++) {                                                     \
                vec_##S xv, xv2;                                                                \
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
/* y (N, O, OH, OW) = conv(xp, w) (+ bias), xp the zero-padded input (N, C, Hp, Wp) followed \
 * by at least sh*Wp + VL*sw elements of slack (read into lanes that are dropped), w (Opad, C, \
 * kh, kw) with Opad a multiple of CONV_OB (rows past O zero). Register block: CONV_OB output \
 * channels x VL output columns x two output rows. (A second thread over half the images      \
 * gained nothing in training: BLAS's threads still spin on the other core after each GEMM.)  \
 */                                                                                             \
void conv2d_direct_##S(const T *xp, long N, long C, long Hp, long Wp, const T *w, long O,      \
                       long kh, long kw, const T *bias, T *y, long OH, long OW, long sh,        \
                       long sw, long dh, long dw) {                                             \
    conv_args_##S a = {xp, N, C, Hp, Wp, w, O, kh, kw, bias, y, OH, OW, sh, sw, dh, dw};        \
    /* blocks of 6 channels where they leave fewer idle than blocks of 8 (LeNet's 6) */       \
    int six = (O + 5) / 6 * 6 < (O + 7) / 8 * 8;                                                \
    if (kw == 5 && sw == 1 && six)                                                              \
        conv_images_##S(&a, 0, N, 5, 1, 6);                                                     \
    else if (kw == 5 && sw == 1)                                                                \
        conv_images_##S(&a, 0, N, 5, 1, CONV_OB);                                               \
    else if (kw == 3 && sw == 1 && six)                                                         \
        conv_images_##S(&a, 0, N, 3, 1, 6);                                                     \
    else if (kw == 3 && sw == 1)                                                                \
        conv_images_##S(&a, 0, N, 3, 1, CONV_OB);                                               \
    else                                                                                        \
        conv_images_##S(&a, 0, N, kw, sw, CONV_OB);                                             \
}                                                                                               \
                                                                                                \
/* Weight gradient of a convolution, lanes over output channels: gw (C*kh*kw, Opad) with      \
 * gw[c,i,j][o] = sum over n, oy, ox of gyt[n,oy,ox][o] * xp[n, c, oy*sh + i*dh, ox*sw + j*dw] \
 * from gyt, the output gradient pixel-major (N, OH, OW, Opad) with Opad a multiple of VL      \
 * (lanes past O zero), and the padded input xp (N, C, Hp, Wp). Four output pixels per pass   \
 * share each accumulator's load and store. */                                                 \
void conv2d_weight_grad_##S(const T *restrict xp, long N, long C, long Hp, long Wp,            \
                            const T *restrict gyt, long Opad, long OH, long OW, long kh,        \
                            long kw, long sh, long sw, long dh, long dw, T *restrict gw) {      \
    long taps = C * kh * kw;                                                                    \
    for (long k = 0; k < taps * Opad; k++) gw[k] = 0;                                           \
    for (long o0 = 0; o0 < Opad; o0 += VL)                                                      \
    for (long n = 0; n < N; n++)                                                                \
    for (long oy = 0; oy < OH; oy++) {                                                          \
        const T *grow = gyt + ((n * OH + oy) * OW) * Opad + o0;                                 \
        long ox = 0;                                                                            \
        for (; ox + 4 <= OW; ox += 4) {                                                         \
            vec_##S g0, g1, g2, g3;                                                             \
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
                    vec_##S acc;                                                                \
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
            vec_##S g0;                                                                         \
            memcpy(&g0, grow + ox * Opad, sizeof g0);                                           \
            for (long c = 0; c < C; c++)                                                        \
            for (long i = 0; i < kh; i++) {                                                     \
                const T *xr = xp + ((n * C + c) * Hp + oy * sh + i * dh) * Wp + ox * sw;        \
                T *ar = gw + ((c * kh + i) * kw) * Opad + o0;                                   \
                for (long j = 0; j < kw; j++) {                                                 \
                    vec_##S acc;                                                                \
                    memcpy(&acc, ar + j * Opad, sizeof acc);                                    \
                    acc += g0 * xr[j * dw];                                                     \
                    memcpy(ar + j * Opad, &acc, sizeof acc);                                    \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
}

/* Weight gradient of a one-channel convolution (LeNet's first layer: 6 output channels, too
 * few for lanes over them), stride 1, no dilation, with lanes along the output rows:
 * gw[o, i, j] = sum over n, y, x of gy[n, o, y, x] * xq[n, y + i, x + j]. A register block
 * holds the kh*kw accumulators of one output channel (at most ROWS_MAX_TAPS) over all images
 * and rows; each is summed across its lanes at the end. xq is the padded input with rows of Wq
 * >= (OW rounded up to VL) + kw - 1 elements, zero past the padded width: the lanes of a
 * row's last, partial vector of gy are zero and meet zeros of xq. */
#define ROWS_MAX_TAPS 25
#define WGRAD_ROWS(T, S, VL)                                                                    \
static inline __attribute__((always_inline)) void wgrad_rows_##S(                               \
        const T *restrict xq, long N, long Hq, long Wq, const T *restrict gy, long O, long OH,  \
        long OW, long kh, long kw, T *restrict gw) {                                            \
    long taps = kh * kw;                                                                        \
    for (long o = 0; o < O; o++) {                                                              \
        vec_##S acc[ROWS_MAX_TAPS];                                                             \
        for (long t = 0; t < taps; t++) acc[t] = (vec_##S){0};                                  \
        for (long n = 0; n < N; n++)                                                            \
        for (long y = 0; y < OH; y++) {                                                         \
            const T *g = gy + ((n * O + o) * OH + y) * OW;                                      \
            for (long x0 = 0; x0 < OW; x0 += VL) {                                              \
                vec_##S gv;                                                                     \
                memcpy(&gv, g + x0, sizeof gv);                                                 \
                for (long i = 0; i < kh; i++) {                                                 \
                    const T *xr = xq + (n * Hq + y + i) * Wq + x0;                              \
                    for (long j = 0; j < kw; j++) {                                             \
                        vec_##S xv;                                                             \
                        memcpy(&xv, xr + j, sizeof xv);                                         \
                        acc[i * kw + j] += gv * xv;                                             \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        for (long t = 0; t < taps; t++) {                                                       \
            T sum = 0;                                                                          \
            for (int l = 0; l < VL; l++) sum += acc[t][l];                                      \
            gw[o * taps + t] = sum;                                                             \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
void conv2d_weight_grad_rows_##S(const T *xq, long N, long Hq, long Wq, const T *gy, long O,    \
                                 long OH, long OW, long kh, long kw, T *gw) {                   \
    /* constant kernel sizes unroll the tap loops and keep the accumulators in registers */     \
    if (kh == 5 && kw == 5)                                                                     \
        wgrad_rows_##S(xq, N, Hq, Wq, gy, O, OH, OW, 5, 5, gw);                                 \
    else if (kh == 3 && kw == 3)                                                                \
        wgrad_rows_##S(xq, N, Hq, Wq, gy, O, OH, OW, 3, 3, gw);                                 \
    else                                                                                        \
        wgrad_rows_##S(xq, N, Hq, Wq, gy, O, OH, OW, kh, kw, gw);                               \
}

CONV_KERNELS(float, f32, 16)
WGRAD_ROWS(float, f32, 16)
WGRAD_ROWS(double, f64, 8)
CONV_KERNELS(double, f64, 8)
#pragma GCC pop_options

/* planes (P, H, W) zero-padded into out (P, H + top + bottom, W + left + right) followed by
 * `slack` zeros, writing every output element once (a fill of the whole buffer and a copy of
 * the interior wrote the interior twice). */
#define PAD2D(T, S)                                                                             \
void pad2d_##S(const T *restrict x, long planes, long H, long W, long top, long bottom,        \
               long left, long right, long slack, T *restrict out) {                            \
    long Wp = W + left + right;                                                                 \
    for (long p = 0; p < planes; p++) {                                                         \
        const T *src = x + p * H * W;                                                           \
        memset(out, 0, top * Wp * sizeof(T));                                                   \
        out += top * Wp;                                                                        \
        for (long r = 0; r < H; r++) {                                                          \
            memset(out, 0, left * sizeof(T));                                                   \
            memcpy(out + left, src + r * W, W * sizeof(T));                                     \
            memset(out + left + W, 0, right * sizeof(T));                                       \
            out += Wp;                                                                          \
        }                                                                                       \
        memset(out, 0, bottom * Wp * sizeof(T));                                                \
        out += bottom * Wp;                                                                     \
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
                memcpy(dst, src, OW * sizeof(T));                                               \
            else                                                                                \
                for (long ox = 0; ox < OW; ox++) dst[ox] = src[ox * sw];                        \
        }                                                                                       \
    }                                                                                           \
}

IM2COL(float, f32)
IM2COL(double, f64)

/* ---- 2x2 max pooling with stride 2 --------------------------------------------------------
 * The NumPy path (deepgrad/ops/conv.py: MaxPoolNd) computed exactly: the maximum folds the
 * window's taps a, b, c, d (row-major) like np.maximum (NaN wins, a tie gives the later
 * operand); the chosen tap is the first equal to the maximum, or the last NaN. Loops run over
 * all windows of a block of `block` planes in order, window q at offset tab[q] of its top-left
 * element (LeNet's rows hold 14 or 5 windows, its planes 196 or 25: too few for vectors along
 * a row or a plane); written branch-free, so the compiler vectorises across windows. Float32
 * only; H and W are even; block * (H/2) * (W/2) <= POOL_MAX_WINDOWS. */
#define POOL_MAX_WINDOWS 4096
static inline float npmax1(float m, float v) { return (m != m || m > v) ? m : v; }

void max_pool_2x2_f32(const float *restrict x, long planes, long H, long W,
                      const int32_t *restrict tab, long block, float *restrict y,
                      uint8_t *restrict choice) {
    long P = (H / 2) * (W / 2);
    for (long p0 = 0; p0 < planes; p0 += block) {
        long n = (planes - p0 < block ? planes - p0 : block) * P;
        const float *base = x + p0 * H * W;
        float *yp = y + p0 * P;
        uint8_t *cp = choice + p0 * P;
        for (long q = 0; q < n; q++) {
            int32_t o = tab[q];
            float a = base[o], b = base[o + 1], c = base[o + W], d = base[o + W + 1];
            float m = npmax1(npmax1(npmax1(a, b), c), d);
            int first = a == m ? 0 : b == m ? 1 : c == m ? 2 : 3;
            int last_nan = d != d ? 3 : c != c ? 2 : b != b ? 1 : 0;
            yp[q] = m;
            cp[q] = (uint8_t)(m != m ? last_nan : first);
        }
    }
}

/* its gradient: each input element gets its window's gradient times 1 if it was the chosen
 * tap, else times 0 (so a NaN gradient reaches the whole window, as in NumPy). Per block of
 * planes, first the four taps' values into contiguous buffers, then interleaved into the
 * input rows: both loops vectorise (scattering straight to the taps took 6x longer). */
void max_pool_2x2_backward_f32(const float *restrict gy, const uint8_t *restrict choice,
                               long planes, long H, long W, long block, float *restrict gx) {
    long OW = W / 2, P = (H / 2) * OW;
    static __thread float taps[4][POOL_MAX_WINDOWS];
    for (long p0 = 0; p0 < planes; p0 += block) {
        long n = (planes - p0 < block ? planes - p0 : block) * P;
        const float *gp = gy + p0 * P;
        const uint8_t *cp = choice + p0 * P;
        for (long q = 0; q < n; q++) {
            float g = gp[q];
            int c = cp[q];
            taps[0][q] = g * (c == 0 ? 1.0f : 0.0f);
            taps[1][q] = g * (c == 1 ? 1.0f : 0.0f);
            taps[2][q] = g * (c == 2 ? 1.0f : 0.0f);
            taps[3][q] = g * (c == 3 ? 1.0f : 0.0f);
        }
        /* rows of windows of consecutive planes follow each other in both gy and gx */
        float *rows = gx + p0 * H * W;
        for (long r = 0; r < n / OW; r++) {
            float *r0 = rows + 2 * r * W, *r1 = r0 + W;
            const float *t0 = taps[0] + r * OW, *t1 = taps[1] + r * OW;
            const float *t2 = taps[2] + r * OW, *t3 = taps[3] + r * OW;
            for (long ox = 0; ox < OW; ox++) {
                r0[2 * ox] = t0[ox];
                r0[2 * ox + 1] = t1[ox];
            }
            for (long ox = 0; ox < OW; ox++) {
                r1[2 * ox] = t2[ox];
                r1[2 * ox + 1] = t3[ox];
            }
        }
    }
}

/* ---- 2x2 average pooling with stride 2 ----------------------------------------------------
 * The NumPy path's float operations (deepgrad/ops/conv.py: AvgPoolNd, windows that tile the
 * input): the two rows added first, then the two columns, then the division by 4; windows
 * addressed as in max_pool_2x2. */
void avg_pool_2x2_f32(const float *restrict x, long planes, long H, long W,
                      const int32_t *restrict tab, long block, float *restrict y) {
    long P = (H / 2) * (W / 2);
    for (long p0 = 0; p0 < planes; p0 += block) {
        long n = (planes - p0 < block ? planes - p0 : block) * P;
        const float *base = x + p0 * H * W;
        float *yp = y + p0 * P;
        for (long q = 0; q < n; q++) {
            int32_t o = tab[q];
            float left = base[o] + base[o + W], right = base[o + 1] + base[o + W + 1];
            yp[q] = (left + right) / 4.0f;
        }
    }
}

/* its gradient: every element of a window gets the window's gradient over 4 */
void avg_pool_2x2_backward_f32(const float *restrict gy, long planes, long H, long W,
                               float *restrict gx) {
    long OH = H / 2, OW = W / 2;
    for (long r = 0; r < planes * OH; r++) {
        const float *gr = gy + r * OW;
        float *r0 = gx + 2 * r * W, *r1 = r0 + W;
        for (long ox = 0; ox < OW; ox++) {
            float v = gr[ox] / 4.0f;
            r0[2 * ox] = v;
            r0[2 * ox + 1] = v;
        }
        for (long x = 0; x < W; x++) r1[x] = r0[x];
    }
}
