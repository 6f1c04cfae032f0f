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
 * The scan's forward keeps the state entering every chunk of `chunk` positions (`bounds`) and
 * p (`pre`); backward recomputes one chunk's states and decays at a time from its bound (so
 * they stay in the core's L2 cache) and runs the adjoint recurrence right to left:
 * G_t = dLoss/dh_t = C_t g_t + A_bar_{t+1} G_{t+1}, with g_t = dLoss/dp_t = grad_y SiLU(z_t):
 *     dC_t = sum_e g_t h_t          dB_t = sum_e G_t Delta_t u_t        dD = sum_t g_t u_t
 *     du_t = Delta_t sum_n G_t B_t + D g_t
 *     dDelta_t = u_t sum_n G_t B_t + sum_n G_t A_bar_t h_{t-1} A,  ddelta_t = dDelta_t sigmoid(.)
 *     dA = sum_t G_t A_bar_t h_{t-1} Delta_t,   dz_t = grad_y p_t SiLU'(z_t)
 *
 * Layouts: every tensor is batch-major, positions then channels, channels contiguous. delta,
 * u, y, pre, grad_y and all gradients are contiguous (users, L, E | N); B, C, z and the conv's
 * input may be column slices of wider rows (row strides ld_bc, ld_z, ld_x: the views that
 * torch's split / chunk return). A, g_A (E, N); w, g_w (K, E): the conv taps transposed.
 * Per-channel gradients (g_A, g_D, g_bias, g_w, g_b) are added to, so each thread has its own.
 * Loops over n (states) or e (channels) carry no dependence between iterations, so the
 * compiler vectorises them, exp included (glibc's libmvec, with -ffast-math).
 * Compile with -DUSE_DOUBLE for a float64 build (the tests'), float32 otherwise.
 */
#include <math.h>
#include <string.h>

#ifdef USE_DOUBLE
typedef double REAL;
#define EXP exp
#define LOG1P log1p
#define STATE_EXP exp
#else
typedef float REAL;
#define EXP expf
#define LOG1P log1pf
#define STATE_EXP inline_expf
#endif

/* exp in float32 for the decays exp(Delta A) of the state loops, inlined so that the loops
 * over n stay free of calls: exp(x) = 2^k e^r, k = round(x / ln 2), r = x - k ln 2 (ln 2 in two
 * parts), e^r by its Taylor polynomial of degree 7 (|r| <= ln 2 / 2: relative error < 1e-8,
 * under float32 rounding). x is clamped to [-87, 88], where 2^k is a normal float: a decay
 * below e^-87 = 1.6e-38 reads 1.6e-38 instead of a subnormal or zero, which changes no state by
 * more than that. The float64 build (the tests') uses libm's exp. */
static inline float inline_expf(float x)
{
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float k = __builtin_roundf(x * 1.44269504088896341f);
    float r = __builtin_fmaf(k, -0.693145751953125f, x);
    r = __builtin_fmaf(k, -1.42860682030941723212e-6f, r);
    float p = 1.0f / 5040;
    p = __builtin_fmaf(p, r, 1.0f / 720);
    p = __builtin_fmaf(p, r, 1.0f / 120);
    p = __builtin_fmaf(p, r, 1.0f / 24);
    p = __builtin_fmaf(p, r, 1.0f / 6);
    p = __builtin_fmaf(p, r, 0.5f);
    p = __builtin_fmaf(p, r, 1.0f);
    p = __builtin_fmaf(p, r, 1.0f);
    union { int i; float f; } scale = { .i = ((int)k + 127) << 23 };
    return p * scale.f;
}

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

void scan_forward(long users, long L, long E, long N, long chunk,
                  const REAL *restrict delta, const REAL *restrict delta_bias,
                  const REAL *restrict u, const REAL *restrict A_t /* (N, E) */,
                  const REAL *restrict B, const REAL *restrict C, long ld_bc,
                  const REAL *restrict D, const REAL *restrict z /* or NULL */, long ld_z,
                  REAL *restrict y, REAL *restrict pre /* p, when z */,
                  REAL *restrict bounds /* (users, ceil(L / chunk), N, E) */,
                  REAL *restrict work /* N E + 2 E */)
{
    const long n_chunks = (L + chunk - 1) / chunk;
    REAL *restrict h = work, *restrict dt = work + N * E, *restrict p = dt + E;
    for (long b = 0; b < users; b++) {
        const REAL *restrict u_b = u + b * L * E;
        const REAL *restrict B_b = B + b * L * ld_bc, *restrict C_b = C + b * L * ld_bc;
        memset(h, 0, sizeof(REAL) * N * E);
        for (long t = 0; t < L; t++) {
            if (t % chunk == 0)
                memcpy(bounds + (b * n_chunks + t / chunk) * N * E, h, sizeof(REAL) * N * E);
            const REAL *restrict ut = u_b + t * E;
            const REAL *restrict Bt = B_b + t * ld_bc, *restrict Ct = C_b + t * ld_bc;
            softplus_row(E, delta + (b * L + t) * E, delta_bias, dt);
            for (long e = 0; e < E; e++)
                p[e] = D[e] * ut[e];
            for (long n = 0; n < N; n++) {
                const REAL Bn = Bt[n], Cn = Ct[n];
                const REAL *restrict An = A_t + n * E;
                REAL *restrict hn = h + n * E;
                for (long e = 0; e < E; e++) {
                    const REAL v = STATE_EXP(dt[e] * An[e]) * hn[e] + dt[e] * ut[e] * Bn;
                    hn[e] = v;
                    p[e] += v * Cn;
                }
            }
            REAL *restrict yt = y + (b * L + t) * E;
            if (z) {
                const REAL *restrict zt = z + (b * L + t) * ld_z;
                memcpy(pre + (b * L + t) * E, p, sizeof(REAL) * E);
                for (long e = 0; e < E; e++)
                    yt[e] = p[e] * zt[e] * sigmoid(zt[e]);
            } else {
                memcpy(yt, p, sizeof(REAL) * E);
            }
        }
    }
}

/* States h_s..h_{s+m-1} of one chunk into states[1..m] (states[0] = the bound h_{s-1}),
 * A_bar_t into decays[0..m-1] (each N x E), Delta_t into dt[0..m-1] (rows of E) */
static void chunk_states(long s, long m, long E, long N, const REAL *restrict delta_b,
                         const REAL *restrict delta_bias, const REAL *restrict u_b,
                         const REAL *restrict A_t, const REAL *restrict B_b, long ld_bc,
                         const REAL *restrict bound, REAL *restrict states,
                         REAL *restrict decays, REAL *restrict dt)
{
    memcpy(states, bound, sizeof(REAL) * N * E);
    for (long j = 0; j < m; j++) {
        const long t = s + j;
        const REAL *restrict Bt = B_b + t * ld_bc, *restrict ut = u_b + t * E;
        REAL *restrict dtj = dt + j * E;
        softplus_row(E, delta_b + t * E, delta_bias, dtj);
        for (long n = 0; n < N; n++) {
            const REAL Bn = Bt[n];
            const REAL *restrict An = A_t + n * E, *restrict h_prev = states + (j * N + n) * E;
            REAL *restrict a = decays + (j * N + n) * E, *restrict h = states + ((j + 1) * N + n) * E;
            for (long e = 0; e < E; e++) {
                a[e] = STATE_EXP(dtj[e] * An[e]);
                h[e] = a[e] * h_prev[e] + dtj[e] * ut[e] * Bn;
            }
        }
    }
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
                   REAL *restrict work /* (2 chunk + 2) N E + chunk E + 3 E */)
{
    const long n_chunks = (L + chunk - 1) / chunk;
    REAL *restrict states = work;                       /* (chunk + 1) N E */
    REAL *restrict decays = states + (chunk + 1) * N * E;  /* chunk N E */
    REAL *restrict G = decays + chunk * N * E;          /* N E */
    REAL *restrict dt = G + N * E;                      /* chunk E */
    REAL *restrict g = dt + chunk * E;                  /* E: dLoss/dp_t */
    REAL *restrict sum_GB = g + E, *restrict sum_gdA_A = sum_GB + E;
    for (long b = 0; b < users; b++) {
        const REAL *restrict d_b = delta + b * L * E, *restrict u_b = u + b * L * E;
        const REAL *restrict B_b = B + b * L * ld_bc, *restrict C_b = C + b * L * ld_bc;
        memset(G, 0, sizeof(REAL) * N * E);
        for (long k = n_chunks - 1; k >= 0; k--) {
            const long s = k * chunk, m = (L - s < chunk) ? L - s : chunk;
            chunk_states(s, m, E, N, d_b, delta_bias, u_b, A_t, B_b, ld_bc,
                         bounds + (b * n_chunks + k) * N * E, states, decays, dt);
            for (long j = m - 1; j >= 0; j--) {
                const long t = s + j, row = (b * L + t) * E;
                const REAL *restrict Bt = B_b + t * ld_bc, *restrict Ct = C_b + t * ld_bc;
                const REAL *restrict ut = u_b + t * E, *restrict dtj = dt + j * E;
                if (z) {   /* g = grad_y SiLU(z); dz = grad_y p SiLU'(z) */
                    const REAL *restrict zt = z + (b * L + t) * ld_z;
                    for (long e = 0; e < E; e++) {
                        const REAL sz = sigmoid(zt[e]);
                        g[e] = grad_y[row + e] * zt[e] * sz;
                        g_z[row + e] = grad_y[row + e] * pre[row + e] * sz * (1 + zt[e] * (1 - sz));
                    }
                } else {
                    memcpy(g, grad_y + row, sizeof(REAL) * E);
                }
                memset(sum_GB, 0, sizeof(REAL) * E);
                memset(sum_gdA_A, 0, sizeof(REAL) * E);
                for (long n = 0; n < N; n++) {
                    const REAL Bn = Bt[n], Cn = Ct[n];
                    const REAL *restrict An = A_t + n * E, *restrict a = decays + (j * N + n) * E;
                    const REAL *restrict h = states + ((j + 1) * N + n) * E;
                    const REAL *restrict h_prev = states + (j * N + n) * E;
                    REAL *restrict Gn = G + n * E, *restrict gAn = g_A_t + n * E;
                    REAL gC = 0, gB = 0;
#pragma GCC ivdep   /* the rows are distinct parts of `work`: gcc cannot tell from block-scope restrict */
                    for (long e = 0; e < E; e++) {
                        const REAL Gv = Gn[e] + g[e] * Cn;           /* G_t */
                        const REAL g_dA = Gv * a[e] * h_prev[e];     /* dLoss/d(Delta_t A) */
                        gC += g[e] * h[e];
                        gB += Gv * dtj[e] * ut[e];
                        sum_GB[e] += Gv * Bn;
                        sum_gdA_A[e] += g_dA * An[e];
                        gAn[e] += g_dA * dtj[e];
                        Gn[e] = a[e] * Gv;                          /* A_bar_t G_t, for t - 1 */
                    }
                    g_C[(b * L + t) * N + n] = gC;
                    g_B[(b * L + t) * N + n] = gB;
                }
                const REAL *restrict raw = d_b + t * E;
                for (long e = 0; e < E; e++) {
                    const REAL x = raw[e] + delta_bias[e];
                    const REAL g_dt = ut[e] * sum_GB[e] + sum_gdA_A[e];
                    const REAL gd = x > SOFTPLUS_THRESHOLD ? g_dt : g_dt * sigmoid(x);
                    g_delta[row + e] = gd;
                    g_bias[e] += gd;
                    g_u[row + e] = dtj[e] * sum_GB[e] + D[e] * g[e];
                    g_D[e] += g[e] * ut[e];
                }
            }
        }
    }
}
