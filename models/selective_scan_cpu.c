/* The inside of a Mamba block on one CPU core, fused: the causal depthwise convolution with its
 * SiLU, and the selective scan with its softplus, D skip and SiLU(z) gate. One user at a time:
 * that user's E x N state stays in the core's cache while the scan walks its positions, instead
 * of passing every (position, user, channel, state) element through memory several times as
 * the PyTorch ops do. models/cpu_scan.py compiles this file (once per machine) and calls it;
 * the equations are those of models/mamba4rec.py `selective_scan_ref` and MambaBlock:
 *
 *   conv:  x_t = SiLU(b_e + sum_{k<K} w_{k,e} xin_{t-K+1+k}),  xin_{<0} = 0     (per channel e)
 *   scan:  Delta_t = softplus(delta_t + delta_bias)   (PyTorch's: x for x > 20)
 *          A_bar_t = exp(Delta_t A),  h_t = A_bar_t * h_{t-1} + Delta_t u_t B_t,  h_0 = 0
 *          p_t = C_t . h_t + D * u_t,  y_t = p_t * SiLU(z_t)   (y_t = p_t without z)
 *
 * The scan walks one user's positions a chunk of `chunk` positions at a time (so that what a
 * chunk needs stays in the core's L1 and L2 caches at any length), and a chunk block by block
 * of the user's state: VL channels (one SIMD vector) by NB states, whose states stay in
 * registers over the chunk's positions while C_t . h_t is added to p. The forward keeps the
 * state entering every chunk (`bounds`) and p (`pre`); the backward takes the chunks right to
 * left, recomputes a block's decays and entering states from its bound (chunk x NB x 2
 * vectors) and runs the adjoint recurrence right to left:
 * G_t = dLoss/dh_t = C_t g_t + A_bar_{t+1} G_{t+1}, with g_t = dLoss/dp_t = grad_y SiLU(z_t):
 *     dC_t = sum_e g_t h_t          dB_t = sum_e G_t Delta_t u_t        dD = sum_t g_t u_t
 *     du_t = Delta_t sum_n G_t B_t + D g_t
 *     dDelta_t = u_t sum_n G_t B_t + sum_n G_t A_bar_t h_{t-1} A,  ddelta_t = dDelta_t sigmoid(.)
 *     dA = sum_t G_t A_bar_t h_{t-1} Delta_t,   dz_t = grad_y p_t SiLU'(z_t)
 * The sums over n are lane-wise (rows of E); the sums over e go to one vector per (t, n),
 * summed across its lanes once every block has added to it.
 *
 * Layouts: every tensor is batch-major, positions then channels, channels contiguous. delta,
 * u, y, pre, grad_y and all gradients are contiguous (users, L, E | N); B, C, z and the conv's
 * input may be column slices of wider rows (row strides ld_bc, ld_z, ld_x: the views that
 * torch's split / chunk return). A, g_A (N, E) in the scan, w, g_w (K, E): transposed.
 * Per-channel gradients (g_A, g_D, g_bias, g_w, g_b) are added to, so each thread has its own.
 * The scan is written with GCC's vector extensions (vectors of the widest width the CPU has);
 * the conv's loops over e carry no dependence between iterations, so the compiler vectorises
 * them, exp included (glibc's libmvec, with -ffast-math).
 * Compile with -DUSE_DOUBLE for a float64 build (the tests'), float32 otherwise.
 */
#include <math.h>
#include <string.h>

#ifdef USE_DOUBLE
typedef double REAL;
typedef long IREAL;
#define EXP exp
#define LOG1P log1p
#define DECAY_BASE_SCALE 1.0   /* the float64 decays are libm's exp(Delta A) */
#else
typedef float REAL;
typedef int IREAL;
#define EXP expf
#define LOG1P log1pf
#define DECAY_BASE_SCALE 1.44269504088896341f   /* the float32 decays are 2^(Delta A log2(e)) */
#endif

/* the widest vectors this CPU has; NB states of a block in registers (32 vector registers with
 * AVX-512, 16 without) */
#if defined(__AVX512F__)
#define VBYTES 64
#define NB 8
#elif defined(__AVX__)
#define VBYTES 32
#define NB 4
#else
#define VBYTES 16
#define NB 4
#endif
typedef REAL vec __attribute__((vector_size(VBYTES)));
typedef IREAL ivec __attribute__((vector_size(VBYTES)));
#define VL ((long)(VBYTES / sizeof(REAL)))   /* channels in a vector */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* cnt (<= VL) channels from p; the lanes past cnt read 0 */
ALWAYS_INLINE vec vload(const REAL *p, long cnt)
{
    vec v = {0};
    memcpy(&v, p, sizeof(REAL) * (cnt == VL ? VL : cnt));
    return v;
}

ALWAYS_INLINE void vstore(REAL *p, vec v, long cnt)
{
    memcpy(p, &v, sizeof(REAL) * (cnt == VL ? VL : cnt));
}

/* A_bar = exp(Delta A) of a vector of x = Delta A log2(e) (x = Delta A in the float64 build).
 * float32: 2^x = 2^k 2^r, k = round(x), r = x - k in [-1/2, 1/2], 2^r by a degree-6 polynomial
 * fitted to its relative error (< 2e-9, under float32 rounding). x is clamped to [-125, 127],
 * so 2^k is a normal float: a decay below 2^-125 = 2.4e-38 reads 2^-125 instead of a subnormal
 * or zero, which changes no state by more than that. */
#define EXP2_POLY(r) (1.0000000005920204f + (r) * (6.931472056005106e-1f + (r) * (2.4022646608713902e-1f \
    + (r) * (5.550328997517885e-2f + (r) * (9.618519534357023e-3f + (r) * (1.3399860363039766e-3f \
    + (r) * 1.533757683065312e-4f))))))
#if defined(USE_DOUBLE)
ALWAYS_INLINE vec decay(vec x)
{
    vec a = {0};
    for (long l = 0; l < VL; l++)
        a[l] = exp(x[l]);
    return a;
}
#elif defined(__AVX512F__) && defined(__AVX512DQ__)   /* reduce is AVX512DQ */
#include <immintrin.h>
/* AVX-512 has the steps as instructions: reduce (x - round(x)), roundscale, scalef (p 2^k) */
ALWAYS_INLINE vec decay(vec xv)
{
    const __m512 x = _mm512_max_ps(_mm512_min_ps((__m512)xv, _mm512_set1_ps(127.0f)),
                                   _mm512_set1_ps(-125.0f));
    const __m512 r = _mm512_reduce_ps(x, 0), k = _mm512_roundscale_ps(x, 0);
    return (vec)_mm512_scalef_ps((__m512)EXP2_POLY((vec)r), k);
}
#else
ALWAYS_INLINE vec clamp(vec x, REAL lo, REAL hi)   /* no ?: on vectors in C: masks */
{
    const vec lov = x * 0 + lo, hiv = x * 0 + hi;
    const ivec below = x < lov, above = x > hiv;
    x = (vec)(((ivec)x & ~below) | ((ivec)lov & below));
    return (vec)(((ivec)x & ~above) | ((ivec)hiv & above));
}

ALWAYS_INLINE vec decay(vec x)
{
    x = clamp(x, -125.0f, 127.0f);
    const ivec k = __builtin_convertvector(x + 1024.5f, ivec) - 1024;   /* floor(x + 1/2) */
    const vec r = x - __builtin_convertvector(k, vec);
    return (vec)((ivec)EXP2_POLY(r) + (k << 23));                      /* 2^k: the exponent bits */
}
#endif

#define SOFTPLUS_THRESHOLD 20   /* PyTorch's softplus returns x itself above it */

static inline REAL sigmoid(REAL x) { return 1 / (1 + EXP(-x)); }

/* Delta for one position's E channels: softplus(delta + delta_bias) */
static void softplus_row(long E, const REAL *restrict raw, const REAL *restrict bias,
                         REAL *restrict dt)
{
    for (long e = 0; e < E; e++) {
        const REAL x = raw[e] + bias[e];
        dt[e] = x > SOFTPLUS_THRESHOLD ? x : LOG1P(EXP(x));
    }
}

/* ---- causal depthwise convolution + SiLU ---------------------------------------------- */

/* s_e = b_e + sum_k w_{k,e} xin_{t-K+1+k} at one position t of one user (x_b: that user's rows) */
static void conv_row(long t, long E, long K, const REAL *restrict x_b, long ld_x,
                     const REAL *restrict w, const REAL *restrict bias, REAL *restrict s)
{
    memcpy(s, bias, sizeof(REAL) * E);
    for (long k = 0; k < K; k++) {
        const long src = t - K + 1 + k;
        if (src < 0)
            continue;
        const REAL *restrict xr = x_b + src * ld_x, *restrict wk = w + k * E;
        for (long e = 0; e < E; e++)
            s[e] += wk[e] * xr[e];
    }
}

void conv_silu_forward(long users, long L, long E, long K, const REAL *restrict x, long ld_x,
                       const REAL *restrict w, const REAL *restrict bias, REAL *restrict out,
                       REAL *restrict s /* E */)
{
    for (long b = 0; b < users; b++)
        for (long t = 0; t < L; t++) {
            conv_row(t, E, K, x + b * L * ld_x, ld_x, w, bias, s);
            REAL *restrict o = out + (b * L + t) * E;
            for (long e = 0; e < E; e++)
                o[e] = s[e] * sigmoid(s[e]);
        }
}

void conv_silu_backward(long users, long L, long E, long K, const REAL *restrict x, long ld_x,
                        const REAL *restrict w, const REAL *restrict bias,
                        const REAL *restrict g_out, REAL *restrict g_x /* contiguous */,
                        REAL *restrict g_w /* added to */, REAL *restrict g_b /* added to */,
                        REAL *restrict s /* E */)
{
    for (long b = 0; b < users; b++) {
        const REAL *restrict x_b = x + b * L * ld_x;
        REAL *restrict gx_b = g_x + b * L * E;
        memset(gx_b, 0, sizeof(REAL) * L * E);
        for (long t = 0; t < L; t++) {
            conv_row(t, E, K, x_b, ld_x, w, bias, s);
            const REAL *restrict go = g_out + (b * L + t) * E;
            for (long e = 0; e < E; e++) {   /* s <- dLoss/ds = g SiLU'(s) */
                const REAL sg = sigmoid(s[e]);
                s[e] = go[e] * sg * (1 + s[e] * (1 - sg));
                g_b[e] += s[e];
            }
            for (long k = 0; k < K; k++) {
                const long src = t - K + 1 + k;
                if (src < 0)
                    continue;
                const REAL *restrict xr = x_b + src * ld_x, *restrict wk = w + k * E;
                REAL *restrict gxr = gx_b + src * E, *restrict gwk = g_w + k * E;
                for (long e = 0; e < E; e++) {
                    gxr[e] += wk[e] * s[e];
                    gwk[e] += xr[e] * s[e];
                }
            }
        }
    }
}

/* ---- selective scan ------------------------------------------------------------------- */

/* Delta (dt) and Delta u (dtu) of m positions (rows of E) */
static void chunk_deltas(long m, long E, const REAL *restrict delta, const REAL *restrict bias,
                         const REAL *restrict u, REAL *restrict dt, REAL *restrict dtu)
{
    for (long j = 0; j < m; j++) {
        softplus_row(E, delta + j * E, bias, dt + j * E);
        for (long e = 0; e < E; e++)
            dtu[j * E + e] = dt[j * E + e] * u[j * E + e];
    }
}

/* One block over m positions: cnt channels (from e0: every row pointer starts there) by nb
 * states (from n0: a2, B, C, h start there). h_t = A_bar_t h_{t-1} + Delta_t u_t B_t in
 * registers, from and back to h; p_t (rows of E) += sum_n C_t h_t. */
ALWAYS_INLINE void forward_block(const long nb, const long cnt, long m, long E,
                                 const REAL *restrict dt, const REAL *restrict dtu,
                                 const REAL *restrict a2, const REAL *restrict B,
                                 const REAL *restrict C, long ld_bc, REAL *restrict p,
                                 REAL *restrict h_block)
{
    vec h[NB], A[NB];
    for (long i = 0; i < nb; i++) {
        h[i] = vload(h_block + i * E, cnt);
        A[i] = vload(a2 + i * E, cnt);
    }
    for (long j = 0; j < m; j++) {
        const vec dtv = vload(dt + j * E, cnt), dtuv = vload(dtu + j * E, cnt);
        const REAL *restrict Bt = B + j * ld_bc, *restrict Ct = C + j * ld_bc;
        vec pv = vload(p + j * E, cnt);
        for (long i = 0; i < nb; i++) {
            h[i] = decay(dtv * A[i]) * h[i] + dtuv * Bt[i];
            pv += h[i] * Ct[i];
        }
        vstore(p + j * E, pv, cnt);
    }
    for (long i = 0; i < nb; i++)
        vstore(h_block + i * E, h[i], cnt);
}

/* body(nb, cnt) over every block of a user's state: constant nb and cnt, so that a block's
 * vectors are registers (full vectors of NB states; the remainders of E and N after them) */
#define EACH_NB(body, cnt_) \
    if (nb == NB) body(NB, cnt_); else if (nb == 4) body(4, cnt_);                \
    else if (nb == 2) body(2, cnt_); else body(1, cnt_)
#define FOR_EACH_BLOCK(body) \
    for (long e0 = 0; e0 < E; e0 += VL) {                                        \
        const long cnt = E - e0 < VL ? E - e0 : VL;                               \
        for (long n0 = 0, nb; n0 < N; n0 += nb) {                                 \
            nb = N - n0 >= NB ? NB : N - n0 >= 4 ? 4 : N - n0 >= 2 ? 2 : 1;       \
            if (cnt == VL) { EACH_NB(body, VL); } else { EACH_NB(body, cnt); }    \
        }                                                                         \
    }

/* the work (REALs) each thread's scan_forward needs: A log2(e), a user's state, Delta and
 * Delta u of a chunk */
long scan_forward_work(long E, long N, long chunk) { return 2 * N * E + 2 * chunk * E; }

void scan_forward(long users, long L, long E, long N, long chunk,
                  const REAL *restrict delta, const REAL *restrict delta_bias,
                  const REAL *restrict u, const REAL *restrict A_t /* (N, E) */,
                  const REAL *restrict B, const REAL *restrict C, long ld_bc,
                  const REAL *restrict D, const REAL *restrict z /* or NULL */, long ld_z,
                  REAL *restrict y, REAL *restrict pre /* p, when z */,
                  REAL *restrict bounds /* (users, ceil(L / chunk), N, E) */,
                  REAL *restrict work /* scan_forward_work */)
{
    const long n_chunks = (L + chunk - 1) / chunk;
    REAL *restrict a2 = work, *restrict h = a2 + N * E;
    REAL *restrict dt = h + N * E, *restrict dtu = dt + chunk * E;
    for (long i = 0; i < N * E; i++)
        a2[i] = A_t[i] * DECAY_BASE_SCALE;
    for (long b = 0; b < users; b++) {
        memset(h, 0, sizeof(REAL) * N * E);
        for (long k = 0; k < n_chunks; k++) {   /* positions s .. s + m - 1 */
            const long s = k * chunk, m = (L - s < chunk) ? L - s : chunk, row = b * L + s;
            const REAL *restrict u_k = u + row * E;
            const REAL *restrict B_k = B + row * ld_bc, *restrict C_k = C + row * ld_bc;
            REAL *restrict p = (z ? pre : y) + row * E;
            memcpy(bounds + (b * n_chunks + k) * N * E, h, sizeof(REAL) * N * E);
            chunk_deltas(m, E, delta + row * E, delta_bias, u_k, dt, dtu);
            for (long j = 0; j < m; j++)
                for (long e = 0; e < E; e++)
                    p[j * E + e] = D[e] * u_k[j * E + e];
#define FORWARD(nb_, cnt_) forward_block(nb_, cnt_, m, E, dt + e0, dtu + e0, a2 + n0 * E + e0, \
            B_k + n0, C_k + n0, ld_bc, p + e0, h + n0 * E + e0)
            FOR_EACH_BLOCK(FORWARD)
            if (z)
                for (long j = 0; j < m; j++) {
                    const REAL *restrict zt = z + (row + j) * ld_z, *restrict pt = p + j * E;
                    REAL *restrict yt = y + (row + j) * E;
                    for (long e = 0; e < E; e++)
                        yt[e] = pt[e] * zt[e] * sigmoid(zt[e]);
                }
        }
    }
}

/* The adjoint of one block (as in forward_block) over one chunk of m positions, right to
 * left: the chunk's decays and entering states are recomputed from the block's bound into
 * buf, then G_t runs in registers, from and back to G_block; the sums over n are added to
 * sum_GB and sum_gdA (rows of E), the sums over e to gCv, gBv (rows of N vectors), and
 * dA = sum_t G_t A_bar_t h_{t-1} Delta_t to g_A. */
ALWAYS_INLINE void backward_block(const long nb, const long cnt, long m, long E, long N,
                                  const REAL *restrict dt, const REAL *restrict dtu,
                                  const REAL *restrict g, const REAL *restrict a2,
                                  const REAL *restrict B, const REAL *restrict C, long ld_bc,
                                  const REAL *restrict bound, REAL *restrict sum_GB,
                                  REAL *restrict sum_gdA, vec *restrict gCv, vec *restrict gBv,
                                  REAL *restrict G_block, REAL *restrict g_A,
                                  vec *restrict buf /* chunk x nb x 2 */)
{
    vec G[NB], gA[NB], h[NB];
    for (long i = 0; i < nb; i++) {
        G[i] = vload(G_block + i * E, cnt);
        gA[i] = (vec){0};
        h[i] = vload(bound + i * E, cnt);
    }
    for (long j = 0; j < m; j++) {   /* buf: A_bar_t and h_{t-1} */
        const vec dtv = vload(dt + j * E, cnt), dtuv = vload(dtu + j * E, cnt);
        const REAL *restrict Bt = B + j * ld_bc;
        for (long i = 0; i < nb; i++) {
            const vec a = decay(dtv * vload(a2 + i * E, cnt));
            buf[(j * nb + i) * 2] = a;
            buf[(j * nb + i) * 2 + 1] = h[i];
            h[i] = a * h[i] + dtuv * Bt[i];
        }
    }
    for (long j = m - 1; j >= 0; j--) {
        const vec dtv = vload(dt + j * E, cnt), dtuv = vload(dtu + j * E, cnt);
        const vec gv = vload(g + j * E, cnt);
        vec sGB = vload(sum_GB + j * E, cnt), sgdA = vload(sum_gdA + j * E, cnt);
        const REAL *restrict Bt = B + j * ld_bc, *restrict Ct = C + j * ld_bc;
        vec *restrict gCt = gCv + j * N, *restrict gBt = gBv + j * N;
        for (long i = 0; i < nb; i++) {
            const vec a = buf[(j * nb + i) * 2], h_prev = buf[(j * nb + i) * 2 + 1];
            const vec Gv = G[i] + gv * Ct[i];              /* G_t */
            const vec g_dA = Gv * a * h_prev;              /* dLoss/d(Delta_t A) */
            gCt[i] += gv * (a * h_prev + dtuv * Bt[i]);    /* g_t h_t */
            gBt[i] += Gv * dtuv;
            sGB += Gv * Bt[i];
            sgdA += g_dA * vload(a2 + i * E, cnt);        /* A log2(e): see scan_backward */
            gA[i] += g_dA * dtv;
            G[i] = a * Gv;                                 /* A_bar_t G_t, for t - 1 */
        }
        vstore(sum_GB + j * E, sGB, cnt);
        vstore(sum_gdA + j * E, sgdA, cnt);
    }
    for (long i = 0; i < nb; i++) {
        vstore(G_block + i * E, G[i], cnt);
        vstore(g_A + i * E, vload(g_A + i * E, cnt) + gA[i], cnt);
    }
}

/* the work (REALs) each thread's scan_backward needs: A log2(e), a user's G; Delta, Delta u
 * and g of a chunk; gCv, gBv of a chunk; one block's share of a chunk (buf); slack to align
 * the vectors */
long scan_backward_work(long E, long N, long chunk)
{
    return 2 * N * E + 3 * chunk * E + 2 * chunk * N * VL + 2 * chunk * NB * VL + VL;
}

void scan_backward(long users, long L, long E, long N, long chunk,
                   const REAL *restrict delta, const REAL *restrict delta_bias,
                   const REAL *restrict u, const REAL *restrict A_t /* (N, E) */,
                   const REAL *restrict B, const REAL *restrict C, long ld_bc,
                   const REAL *restrict D, const REAL *restrict z, long ld_z,
                   const REAL *restrict pre, const REAL *restrict bounds,
                   const REAL *restrict grad_y,
                   REAL *restrict g_delta, REAL *restrict g_u, REAL *restrict g_B,
                   REAL *restrict g_C, REAL *restrict g_z,
                   REAL *restrict g_A_t /* (N, E), added to */, REAL *restrict g_D,
                   REAL *restrict g_bias /* added to */,
                   REAL *restrict work /* scan_backward_work */)
{
    const long n_chunks = (L + chunk - 1) / chunk;
    REAL *restrict a2 = work, *restrict G = a2 + N * E;
    REAL *restrict dt = G + N * E, *restrict dtu = dt + chunk * E;
    REAL *restrict g = dtu + chunk * E;   /* dLoss/dp_t */
    REAL *vectors = g + chunk * E;
    vectors += (VL - ((unsigned long)vectors / sizeof(REAL)) % VL) % VL;   /* aligned */
    vec *restrict gCv = (vec *)vectors, *restrict gBv = gCv + chunk * N;
    vec *restrict buf = gBv + chunk * N;
    /* a chunk's sums over n are kept in its rows of g_u and g_delta until every block has
     * added to them; sum_n G_t A_bar_t h_{t-1} A is summed with A log2(e), the decays' argument */
    const REAL from_decay_scale = 1 / DECAY_BASE_SCALE;
    for (long i = 0; i < N * E; i++)
        a2[i] = A_t[i] * DECAY_BASE_SCALE;
    for (long b = 0; b < users; b++) {
        memset(G, 0, sizeof(REAL) * N * E);
        for (long k = n_chunks - 1; k >= 0; k--) {   /* positions s .. s + m - 1 */
            const long s = k * chunk, m = (L - s < chunk) ? L - s : chunk, row = b * L + s;
            const REAL *restrict u_k = u + row * E;
            const REAL *restrict B_k = B + row * ld_bc, *restrict C_k = C + row * ld_bc;
            const REAL *restrict bound = bounds + (b * n_chunks + k) * N * E;
            chunk_deltas(m, E, delta + row * E, delta_bias, u_k, dt, dtu);
            for (long j = 0; j < m; j++) {
                const long r = (row + j) * E;
                if (z) {   /* g = grad_y SiLU(z); dz = grad_y p SiLU'(z) */
                    const REAL *restrict zt = z + (row + j) * ld_z;
                    for (long e = 0; e < E; e++) {
                        const REAL sz = sigmoid(zt[e]);
                        g[j * E + e] = grad_y[r + e] * zt[e] * sz;
                        g_z[r + e] = grad_y[r + e] * pre[r + e] * sz * (1 + zt[e] * (1 - sz));
                    }
                } else {
                    memcpy(g + j * E, grad_y + r, sizeof(REAL) * E);
                }
            }
            memset(g_u + row * E, 0, sizeof(REAL) * m * E);
            memset(g_delta + row * E, 0, sizeof(REAL) * m * E);
            memset(gCv, 0, sizeof(vec) * 2 * chunk * N);   /* gCv and gBv, one after the other */
#define BACKWARD(nb_, cnt_) backward_block(nb_, cnt_, m, E, N, dt + e0, dtu + e0, g + e0,          \
                a2 + n0 * E + e0, B_k + n0, C_k + n0, ld_bc, bound + n0 * E + e0,                  \
                g_u + row * E + e0, g_delta + row * E + e0, gCv + n0, gBv + n0, G + n0 * E + e0,  \
                g_A_t + n0 * E + e0, buf)
            FOR_EACH_BLOCK(BACKWARD)
            for (long j = 0; j < m; j++) {
                const long r = (row + j) * E;
                const REAL *restrict raw = delta + r, *restrict ut = u_k + j * E;
                const REAL *restrict dtt = dt + j * E, *restrict gt = g + j * E;
                for (long e = 0; e < E; e++) {
                    const REAL sum_GB = g_u[r + e], sum_gdA_A = g_delta[r + e] * from_decay_scale;
                    const REAL x = raw[e] + delta_bias[e];
                    const REAL g_dt = ut[e] * sum_GB + sum_gdA_A;
                    const REAL gd = x > SOFTPLUS_THRESHOLD ? g_dt : g_dt * sigmoid(x);
                    g_u[r + e] = dtt[e] * sum_GB + D[e] * gt[e];
                    g_delta[r + e] = gd;
                    g_bias[e] += gd;
                    g_D[e] += gt[e] * ut[e];
                }
                for (long n = 0; n < N; n++) {   /* the sums over e, across the lanes */
                    REAL sum_C = 0, sum_B = 0;
                    for (long l = 0; l < VL; l++) {
                        sum_C += gCv[j * N + n][l];
                        sum_B += gBv[j * N + n][l];
                    }
                    g_C[(row + j) * N + n] = sum_C;
                    g_B[(row + j) * N + n] = sum_B;
                }
            }
        }
    }
}
