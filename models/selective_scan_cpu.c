/* Mamba's selective scan on one CPU core, fused: the state of one user (E x N numbers) stays in
 * the core's cache while the scan walks its positions, instead of passing every (position, user,
 * channel, state) element through memory several times as the PyTorch ops do.
 * models/cpu_scan.py compiles this file (once per machine) and calls it; the equations are
 * those of models/mamba4rec.py `selective_scan_ref`, with Delta already through softplus:
 *
 *     A_bar_t = exp(Delta_t A),  h_t = A_bar_t * h_{t-1} + Delta_t u_t B_t,  h_0 = 0,
 *     y_t = C_t . h_t                                          (per user; the D skip is outside)
 *
 * Backward recomputes the user's states h_0..h_{L-1} into `states` and runs the adjoint
 * recurrence right to left: G_t = dLoss/dh_t = C_t g_t + A_bar_{t+1} G_{t+1}, then
 *     dC_t = sum_e g_t h_t          dB_t = sum_e G_t Delta_t u_t
 *     du_t = Delta_t sum_n G_t B_t  dDelta_t = u_t sum_n G_t B_t + sum_n G_t A_bar_t h_{t-1} A
 *     dA   = sum_t G_t A_bar_t h_{t-1} Delta_t
 *
 * Layouts, all contiguous, batch-major: delta, u, y, grad_y, g_delta, g_u (users, L, E);
 * B, C, g_B, g_C (users, L, N); A, g_A (E, N). REAL is float or double (-DREAL=...).
 * The loops over n have no dependence between iterations, so the compiler vectorises them,
 * exp included (glibc's libmvec, with -ffast-math).
 */
#include <math.h>
#include <string.h>

#ifndef REAL
#define REAL float
#endif

static inline REAL exp_real(REAL x) { return sizeof(REAL) == sizeof(float) ? expf(x) : exp(x); }

/* One user's states: h_t for t = 0..L-1 written into states[t + 1], states[0] = 0. */
static void user_states(long L, long E, long N, const REAL *restrict delta,
                        const REAL *restrict u, const REAL *restrict A,
                        const REAL *restrict B, REAL *restrict states, REAL *restrict decays)
{
    memset(states, 0, sizeof(REAL) * E * N);
    for (long t = 0; t < L; t++) {
        const REAL *restrict Bt = B + t * N;
        const REAL *restrict h_prev = states + t * E * N;
        REAL *restrict h = states + (t + 1) * E * N;
        for (long e = 0; e < E; e++) {
            const REAL dt = delta[t * E + e], du = dt * u[t * E + e];
            const REAL *restrict Ae = A + e * N;
            REAL *restrict a = decays + (t * E + e) * N;
            for (long n = 0; n < N; n++) {
                a[n] = exp_real(dt * Ae[n]);
                h[e * N + n] = a[n] * h_prev[e * N + n] + du * Bt[n];
            }
        }
    }
}

void scan_forward(long users, long L, long E, long N, const REAL *restrict delta,
                  const REAL *restrict u, const REAL *restrict A, const REAL *restrict B,
                  const REAL *restrict C, REAL *restrict y, REAL *restrict h /* E N */)
{
    for (long b = 0; b < users; b++) {
        const REAL *restrict d_b = delta + b * L * E, *restrict u_b = u + b * L * E;
        const REAL *restrict B_b = B + b * L * N, *restrict C_b = C + b * L * N;
        REAL *restrict y_b = y + b * L * E;
        memset(h, 0, sizeof(REAL) * E * N);
        for (long t = 0; t < L; t++) {
            for (long e = 0; e < E; e++) {
                const REAL dt = d_b[t * E + e], du = dt * u_b[t * E + e];
                const REAL *restrict Ae = A + e * N;
                REAL *restrict he = h + e * N;
                REAL acc = 0;
                for (long n = 0; n < N; n++) {
                    const REAL v = exp_real(dt * Ae[n]) * he[n] + du * B_b[t * N + n];
                    he[n] = v;
                    acc += v * C_b[t * N + n];
                }
                y_b[t * E + e] = acc;
            }
        }
    }
}

void scan_backward(long users, long L, long E, long N, const REAL *restrict delta,
                   const REAL *restrict u, const REAL *restrict A, const REAL *restrict B,
                   const REAL *restrict C, const REAL *restrict grad_y,
                   REAL *restrict g_delta, REAL *restrict g_u, REAL *restrict g_A /* added to */,
                   REAL *restrict g_B, REAL *restrict g_C,
                   REAL *restrict states /* (L + 1) E N */, REAL *restrict G /* E N */, REAL *restrict decays)
{
    for (long b = 0; b < users; b++) {
        const REAL *restrict d_b = delta + b * L * E, *restrict u_b = u + b * L * E;
        const REAL *restrict B_b = B + b * L * N, *restrict C_b = C + b * L * N;
        const REAL *restrict gy_b = grad_y + b * L * E;
        user_states(L, E, N, d_b, u_b, A, B_b, states, decays);
        memset(G, 0, sizeof(REAL) * E * N);
        memset(g_B + b * L * N, 0, sizeof(REAL) * L * N);
        memset(g_C + b * L * N, 0, sizeof(REAL) * L * N);
        for (long t = L - 1; t >= 0; t--) {
            const REAL *restrict Bt = B_b + t * N, *restrict Ct = C_b + t * N;
            const REAL *restrict h = states + (t + 1) * E * N, *restrict h_prev = states + t * E * N;
            REAL *restrict gBt = g_B + (b * L + t) * N, *restrict gCt = g_C + (b * L + t) * N;
            for (long e = 0; e < E; e++) {
                const REAL dt = d_b[t * E + e], ut = u_b[t * E + e], du = dt * ut;
                const REAL gy = gy_b[t * E + e];
                const REAL *restrict Ae = A + e * N;
                REAL *restrict Ge = G + e * N, *restrict gAe = g_A + e * N;
                REAL sum_GB = 0, sum_gdA_A = 0;
                for (long n = 0; n < N; n++) {
                    const REAL g = Ge[n] + gy * Ct[n];          /* G_t */
                    const REAL a = decays[(t * E + e) * N + n];  /* A_bar_t */
                    const REAL g_dA = g * a * h_prev[e * N + n]; /* dLoss/d(Delta_t A) */
                    gCt[n] += gy * h[e * N + n];
                    gBt[n] += g * du;
                    sum_GB += g * Bt[n];
                    sum_gdA_A += g_dA * Ae[n];
                    gAe[n] += g_dA * dt;
                    Ge[n] = a * g;                              /* A_bar_t G_t, for t - 1 */
                }
                g_u[(b * L + t) * E + e] = dt * sum_GB;
                g_delta[(b * L + t) * E + e] = ut * sum_GB + sum_gdA_A;
            }
        }
    }
}
