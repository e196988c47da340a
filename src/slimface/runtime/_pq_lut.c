/*
 * slimface PQ lookup-table kernel for product-quantized Linear layers (loaded with ctypes by
 * slimface.runtime.pq; the torch path there is the reference and the fallback).
 *
 * pq_linear_lut(x f32[N, M*D], books f32[M, K, D], idx u8[M, R], bias f32[R] or NULL,
 *               table f32[M*K] scratch, out f32[N, R], N, M, K, D, R)
 *   table[m*K + k] = <x[n, m*D:(m+1)*D], books[m, k]>     (M*K*D multiply-adds, once)
 *   out[n, r]      = bias[r] + sum_m table[m*K + idx[m, r]]  (M table reads per output)
 *
 * For K <= 256 an index is one byte, so an output reads M bytes instead of M*D*4 bytes of
 * fp32 weights: the batch-1 product is memory-bound, which is where the table wins. The loop
 * runs subspace-major: the K-entry table of one subspace stays in L1 while every output
 * adds its entry (the index rows stream sequentially), instead of one cache miss per read
 * when a large table is walked output by output.
 */
#include <stddef.h>
#include <stdint.h>

static void make_table(const float *x, const float *books, float *table, int m, int k, int d) {
    for (int mi = 0; mi < m; ++mi) {
        const float *xs = x + (size_t)mi * d;
        const float *bk = books + (size_t)mi * k * d;
        float *t = table + (size_t)mi * k;
        for (int ki = 0; ki < k; ++ki) {
            float s = 0.0f;
            for (int c = 0; c < d; ++c) s += bk[(size_t)ki * d + c] * xs[c];
            t[ki] = s;
        }
    }
}

void pq_linear_lut(const float *x, const float *books, const uint8_t *idx, const float *bias,
                   float *table, float *out, int n, int m, int k, int d, int r) {
    for (int b = 0; b < n; ++b) {
        make_table(x + (size_t)b * m * d, books, table, m, k, d);
        float *o = out + (size_t)b * r;
        for (int ri = 0; ri < r; ++ri) o[ri] = bias ? bias[ri] : 0.0f;
        for (int mi = 0; mi < m; ++mi) {
            const float *t = table + (size_t)mi * k;
            const uint8_t *ix = idx + (size_t)mi * r;
            for (int ri = 0; ri < r; ++ri) o[ri] += t[ix[ri]];
        }
    }
}
