/*
 * slimface binary-layer kernels (CPython extension; NumPy fallback: _kernel_py.py).
 *
 * Conventions shared with slimface.compress.quantizers and slimface.runtime.kernel:
 *   - sign(x) = +1 for x >= 0 (bit 1), -1 for x < 0 (bit 0); NaN packs as -1.
 *   - Activations are NHWC. Along channels, bit b of word w holds channel 64*w + b; bits past
 *     C are 0 in both activations and weights, so they never count.
 *   - Binary-activation convs pad with +1 (sign(0) = +1, i.e. zero padding before the sign).
 *   - Weights (prepared by kernel.prepare_*): words[(i*kw + j)*Cw + w][co], co padded to 32.
 *
 * Functions (all write into a caller-allocated output; the GIL is released):
 *   pack_nhwc(x f32[N,H,W,C], out u64[N,H,W,Cw], threads)
 *   bconv(x f32[N,H,W,C], wwords u64[KK*Cw, CoP], scale f32[Cout], bias f32[Cout],
 *         out f32[N,OH,OW,Cout], kh, kw, sh, sw, ph, pw, threads)
 *       out = scale * dot + bias, dot = K - 2 popcount(x_bits XOR w_bits) (exact integer,
 *       K = kh*kw*C), so a zero dot gives exactly the bias, as the float reference does.
 *   fconv(x f32[N,H,W,C], wmask u16[KK*C, CoP/16], scale f32[Cout], bias f32[Cout], out,
 *         kh, kw, sh, sw, ph, pw, threads)
 *       out = scale * sum_k (w_k ? x_k : -x_k) + bias   (zero padding)
 *   isa() -> "avx512" | "avx2" | "portable";  set_isa(name) forces a path (tests, benchmarks).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <immintrin.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define CO_TILE 32
#define ISA_PORTABLE 0
#define ISA_AVX2 1
#define ISA_AVX512 2

static int g_isa = ISA_PORTABLE;
static int g_best_isa = ISA_PORTABLE;
static const char *ISA_NAMES[] = {"portable", "avx2", "avx512"};

/* ------------------------------------------------------------------ geometry */
typedef struct {
    int n, h, w, c, cw;         /* input */
    int kh, kw, sh, sw, ph, pw; /* conv */
    int oh, ow, cout, cop;      /* output; cop = cout padded to CO_TILE */
    int hp, wp;                 /* padded input */
    long k;                     /* kh * kw * c: bits per dot product */
} geom_t;

/* ------------------------------------------------------------------ packing */
static inline uint64_t pack64_portable(const float *x, int count) {
    uint64_t word = 0;
    for (int b = 0; b < count; b++) word |= (uint64_t)(x[b] >= 0.0f) << b;
    return word;
}

__attribute__((target("avx512f")))
static inline uint64_t pack64_avx512(const float *x, int count) {
    if (count == 64) {
        uint64_t m0 = _mm512_cmp_ps_mask(_mm512_loadu_ps(x), _mm512_setzero_ps(), _CMP_GE_OQ);
        uint64_t m1 = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + 16), _mm512_setzero_ps(), _CMP_GE_OQ);
        uint64_t m2 = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + 32), _mm512_setzero_ps(), _CMP_GE_OQ);
        uint64_t m3 = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + 48), _mm512_setzero_ps(), _CMP_GE_OQ);
        return m0 | (m1 << 16) | (m2 << 32) | (m3 << 48);
    }
    return pack64_portable(x, count);
}

__attribute__((target("avx2")))
static inline uint64_t pack64_avx2(const float *x, int count) {
    if (count == 64) {
        uint64_t word = 0;
        for (int q = 0; q < 8; q++) {
            __m256 v = _mm256_cmp_ps(_mm256_loadu_ps(x + 8 * q), _mm256_setzero_ps(), _CMP_GE_OQ);
            word |= (uint64_t)(unsigned)_mm256_movemask_ps(v) << (8 * q);
        }
        return word;
    }
    return pack64_portable(x, count);
}

static inline uint64_t pack64(const float *x, int count) {
    if (g_isa == ISA_AVX512) return pack64_avx512(x, count);
    if (g_isa == ISA_AVX2) return pack64_avx2(x, count);
    return pack64_portable(x, count);
}

/* One pixel's channels into cw words. */
static inline void pack_pixel(const float *x, int c, int cw, uint64_t *out) {
    for (int w = 0; w < cw; w++) {
        int left = c - 64 * w;
        out[w] = pack64(x + 64 * w, left < 64 ? left : 64);
    }
}

/* Word that stands for an all-(+1) pixel: the valid channel bits set. */
static inline uint64_t pad_word(int c, int w) {
    int left = c - 64 * w;
    return left >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << left) - 1);
}

/* Pack x into a padded buffer [N, HP, WP, Cw]; the border is +1 (sign(0) = +1). */
static void pack_padded(const float *x, const geom_t *g, uint64_t *buf, int threads) {
    long rows = (long)g->n * g->hp;
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
    for (long r = 0; r < rows; r++) {
        int n = (int)(r / g->hp), y = (int)(r % g->hp) - g->ph;
        uint64_t *dst = buf + r * g->wp * g->cw;
        for (int xx = 0; xx < g->wp; xx++) {
            int sx = xx - g->pw;
            uint64_t *d = dst + (long)xx * g->cw;
            if (y < 0 || y >= g->h || sx < 0 || sx >= g->w) {
                for (int w = 0; w < g->cw; w++) d[w] = pad_word(g->c, w);
            } else {
                pack_pixel(x + (((long)n * g->h + y) * g->w + sx) * g->c, g->c, g->cw, d);
            }
        }
    }
}

/* ------------------------------------------------------------------ popcount GEMM */
/* Base pointers (into the padded packed input) of output pixel p's receptive field. */
static inline const uint64_t *field_base(const uint64_t *buf, const geom_t *g, long p) {
    long per_img = (long)g->oh * g->ow;
    long n = p / per_img, rem = p % per_img;
    long oy = rem / g->ow, ox = rem % g->ow;
    return buf + ((n * g->hp + oy * g->sh) * g->wp + ox * g->sw) * g->cw;
}

static void tile_portable(const uint64_t *buf, const geom_t *g, const uint64_t *ww, long p0,
                          int rows, int co0, const float *scl, const float *bia, float *out) {
    for (int r = 0; r < rows; r++) {
        const uint64_t *base = field_base(buf, g, p0 + r);
        int64_t acc[CO_TILE] = {0};
        for (int i = 0; i < g->kh; i++)
            for (int j = 0; j < g->kw; j++) {
                const uint64_t *a = base + ((long)i * g->wp + j) * g->cw;
                const uint64_t *b = ww + (long)((i * g->kw + j) * g->cw) * g->cop + co0;
                for (int w = 0; w < g->cw; w++, b += g->cop) {
                    uint64_t av = a[w];
                    for (int t = 0; t < CO_TILE; t++) acc[t] += __builtin_popcountll(av ^ b[t]);
                }
            }
        float *o = out + (p0 + r) * g->cout;
        for (int t = 0; t < CO_TILE && co0 + t < g->cout; t++)
            o[co0 + t] = fmaf((float)(g->k - 2 * acc[t]), scl[co0 + t], bia[co0 + t]);
    }
}

#define R512 6
/* One output pixel (remainder rows): 4 accumulators of 8 output channels. */
__attribute__((target("avx512f,avx512dq,avx512vl,avx512vpopcntdq,fma")))
static inline void store_row_avx512(__m512i a0, __m512i a1, __m512i a2, __m512i a3, float *o,
                                    int co0, int valid, long k, const float *scl,
                                    const float *bia) {
    __m512i acc[4] = {a0, a1, a2, a3};
    const __m512i kv = _mm512_set1_epi64(k);
    for (int q = 0; q < 4; q++) {
        int left = valid - 8 * q;
        if (left <= 0) break;
        __mmask8 m = left >= 8 ? 0xFF : (__mmask8)((1u << left) - 1);
        __m256 cnt = _mm512_cvtepi64_ps(_mm512_sub_epi64(kv, _mm512_slli_epi64(acc[q], 1)));
        __m256 k0 = _mm256_loadu_ps(scl + co0 + 8 * q), k1 = _mm256_loadu_ps(bia + co0 + 8 * q);
        _mm256_mask_storeu_ps(o + 8 * q, m, _mm256_fmadd_ps(cnt, k0, k1));
    }
}

#define XPOP(acc, a, b) acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(a, b)))
#define ROW_STEP(r)                                         \
    {                                                       \
        __m512i a = _mm512_set1_epi64((long long)p##r[w]); \
        XPOP(s##r##0, a, b0); XPOP(s##r##1, a, b1);         \
        XPOP(s##r##2, a, b2); XPOP(s##r##3, a, b3);         \
    }
#define ROW_DECL(r) __m512i s##r##0 = z, s##r##1 = z, s##r##2 = z, s##r##3 = z; \
                    const uint64_t *base##r = field_base(buf, g, p0 + r);
#define ROW_PTR(r) const uint64_t *p##r = base##r + off;
#define ROW_STORE(r) store_row_avx512(s##r##0, s##r##1, s##r##2, s##r##3, \
                                      out + (p0 + r) * g->cout + co0, co0, valid, g->k, scl, bia);

__attribute__((target("avx512f,avx512dq,avx512vl,avx512vpopcntdq,fma")))
static void tile_avx512_full(const uint64_t *buf, const geom_t *g, const uint64_t *ww, long p0,
                             int co0, const float *scl, const float *bia, float *out) {
    const __m512i z = _mm512_setzero_si512();
    ROW_DECL(0) ROW_DECL(1) ROW_DECL(2) ROW_DECL(3) ROW_DECL(4) ROW_DECL(5)
    for (int i = 0; i < g->kh; i++)
        for (int j = 0; j < g->kw; j++) {
            long off = ((long)i * g->wp + j) * g->cw;
            ROW_PTR(0) ROW_PTR(1) ROW_PTR(2) ROW_PTR(3) ROW_PTR(4) ROW_PTR(5)
            const uint64_t *b = ww + (long)((i * g->kw + j) * g->cw) * g->cop + co0;
            for (int w = 0; w < g->cw; w++, b += g->cop) {
                __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 8);
                __m512i b2 = _mm512_loadu_si512(b + 16), b3 = _mm512_loadu_si512(b + 24);
                ROW_STEP(0) ROW_STEP(1) ROW_STEP(2) ROW_STEP(3) ROW_STEP(4) ROW_STEP(5)
            }
        }
    int valid = g->cout - co0 < CO_TILE ? g->cout - co0 : CO_TILE;
    ROW_STORE(0) ROW_STORE(1) ROW_STORE(2) ROW_STORE(3) ROW_STORE(4) ROW_STORE(5)
}

__attribute__((target("avx512f,avx512dq,avx512vl,avx512vpopcntdq,fma")))
static void tile_avx512(const uint64_t *buf, const geom_t *g, const uint64_t *ww, long p0,
                        int rows, int co0, const float *scl, const float *bia, float *out) {
    if (rows == R512) {
        tile_avx512_full(buf, g, ww, p0, co0, scl, bia, out);
        return;
    }
    const __m512i z = _mm512_setzero_si512();
    int valid = g->cout - co0 < CO_TILE ? g->cout - co0 : CO_TILE;
    for (int r = 0; r < rows; r++) {
        ROW_DECL(0)
        base0 = field_base(buf, g, p0 + r);
        for (int i = 0; i < g->kh; i++)
            for (int j = 0; j < g->kw; j++) {
                long off = ((long)i * g->wp + j) * g->cw;
                ROW_PTR(0)
                const uint64_t *b = ww + (long)((i * g->kw + j) * g->cw) * g->cop + co0;
                for (int w = 0; w < g->cw; w++, b += g->cop) {
                    __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 8);
                    __m512i b2 = _mm512_loadu_si512(b + 16), b3 = _mm512_loadu_si512(b + 24);
                    ROW_STEP(0)
                }
            }
        store_row_avx512(s00, s01, s02, s03, out + (p0 + r) * g->cout + co0, co0, valid, g->k, scl, bia);
    }
}

#define R2 2
__attribute__((target("avx2,fma")))
static inline __m256i popcnt256(__m256i v) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i lo = _mm256_and_si256(v, low), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    __m256i cnt = _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
    return _mm256_sad_epu8(cnt, _mm256_setzero_si256());
}

__attribute__((target("avx2,fma")))
static void tile_avx2(const uint64_t *buf, const geom_t *g, const uint64_t *ww, long p0,
                      int rows, int co0, const float *scl, const float *bia, float *out) {
    for (int r0 = 0; r0 < rows; r0 += R2) {
        int nr = rows - r0 < R2 ? rows - r0 : R2;
        const uint64_t *base[R2];
        __m256i acc[R2][8];
        for (int r = 0; r < R2; r++) {
            base[r] = field_base(buf, g, p0 + r0 + (r < nr ? r : 0));
            for (int q = 0; q < 8; q++) acc[r][q] = _mm256_setzero_si256();
        }
        for (int i = 0; i < g->kh; i++)
            for (int j = 0; j < g->kw; j++) {
                long off = ((long)i * g->wp + j) * g->cw;
                const uint64_t *b = ww + (long)((i * g->kw + j) * g->cw) * g->cop + co0;
                for (int w = 0; w < g->cw; w++, b += g->cop)
                    for (int r = 0; r < nr; r++) {
                        __m256i a = _mm256_set1_epi64x((long long)base[r][off + w]);
                        for (int q = 0; q < 8; q++)
                            acc[r][q] = _mm256_add_epi64(acc[r][q], popcnt256(_mm256_xor_si256(
                                a, _mm256_loadu_si256((const __m256i *)(b + 4 * q)))));
                    }
            }
        for (int r = 0; r < nr; r++) {
            int64_t cnt[CO_TILE];
            for (int q = 0; q < 8; q++) _mm256_storeu_si256((__m256i *)(cnt + 4 * q), acc[r][q]);
            float *o = out + (p0 + r0 + r) * g->cout;
            for (int t = 0; t < CO_TILE && co0 + t < g->cout; t++)
                o[co0 + t] = fmaf((float)(g->k - 2 * cnt[t]), scl[co0 + t], bia[co0 + t]);
        }
    }
}

static void bgemm(const uint64_t *buf, const geom_t *g, const uint64_t *ww, const float *scl,
                  const float *bia, float *out, int threads) {
    long P = (long)g->n * g->oh * g->ow;
    int rt = g_isa == ISA_AVX512 ? R512 : 8;
    long ptiles = (P + rt - 1) / rt, ctiles = g->cop / CO_TILE;
    int isa = g_isa;
    /* Pixel tiles outer, channel tiles inner: each output row is finished while it is in
     * cache (channel-major order rewrote every row once per channel tile, and the write
     * traffic dominated); all the weights stay in L2 (<= 300 KB for 512x512x3x3).
     * Dynamic chunks: on a shared machine a descheduled thread then delays the call by one
     * chunk, not by half the work (static schedules stall until it runs again). */
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads)
    for (long t = 0; t < ptiles * ctiles; t++) {
        int co0 = (int)(t % ctiles) * CO_TILE;
        long p0 = (t / ctiles) * rt;
        int rows = (int)(P - p0 < rt ? P - p0 : rt);
        if (isa == ISA_AVX512) tile_avx512(buf, g, ww, p0, rows, co0, scl, bia, out);
        else if (isa == ISA_AVX2) tile_avx2(buf, g, ww, p0, rows, co0, scl, bia, out);
        else tile_portable(buf, g, ww, p0, rows, co0, scl, bia, out);
    }
}

/* ------------------------------------------------------------------ float activations */
/* Zero-padded float copy [N, HP, WP, C]. */
static void pad_float(const float *x, const geom_t *g, float *buf, int threads) {
    long rows = (long)g->n * g->hp;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (long r = 0; r < rows; r++) {
        int n = (int)(r / g->hp), y = (int)(r % g->hp) - g->ph;
        float *dst = buf + r * g->wp * g->c;
        memset(dst, 0, sizeof(float) * (size_t)g->wp * g->c);
        if (y < 0 || y >= g->h) continue;
        memcpy(dst + (long)g->pw * g->c, x + ((long)n * g->h + y) * g->w * g->c,
               sizeof(float) * (size_t)g->w * g->c);
    }
}

static inline const float *ffield_base(const float *buf, const geom_t *g, long p) {
    long per_img = (long)g->oh * g->ow;
    long n = p / per_img, rem = p % per_img;
    long oy = rem / g->ow, ox = rem % g->ow;
    return buf + ((n * g->hp + oy * g->sh) * g->wp + ox * g->sw) * g->c;
}

static void ftile_portable(const float *buf, const geom_t *g, const uint16_t *wm, long p0,
                           int rows, int co0, const float *scale, const float *bias, float *out) {
    int groups = g->cop / 16;
    for (int r = 0; r < rows; r++) {
        const float *base = ffield_base(buf, g, p0 + r);
        float acc[CO_TILE] = {0};
        for (int i = 0; i < g->kh; i++)
            for (int j = 0; j < g->kw; j++) {
                const float *a = base + ((long)i * g->wp + j) * g->c;
                long k0 = (long)(i * g->kw + j) * g->c;
                for (int c = 0; c < g->c; c++) {
                    const uint16_t *m = wm + (k0 + c) * groups + co0 / 16;
                    float v = a[c];
                    for (int t = 0; t < CO_TILE; t++)
                        acc[t] += ((m[t >> 4] >> (t & 15)) & 1) ? v : -v;
                }
            }
        float *o = out + (p0 + r) * g->cout;
        for (int t = 0; t < CO_TILE && co0 + t < g->cout; t++)
            o[co0 + t] = scale[co0 + t] * acc[t] + bias[co0 + t];
    }
}

__attribute__((target("avx512f")))
static void ftile_avx512(const float *buf, const geom_t *g, const uint16_t *wm, long p0,
                         int rows, int co0, const float *scale, const float *bias, float *out) {
    int groups = g->cop / 16;
    const __m512 zero = _mm512_setzero_ps();
    for (int r = 0; r < rows; r++) {
        const float *base = ffield_base(buf, g, p0 + r);
        __m512 a0 = zero, a1 = zero;
        for (int i = 0; i < g->kh; i++)
            for (int j = 0; j < g->kw; j++) {
                const float *a = base + ((long)i * g->wp + j) * g->c;
                const uint16_t *m = wm + (long)(i * g->kw + j) * g->c * groups + co0 / 16;
                for (int c = 0; c < g->c; c++, m += groups) {
                    __m512 v = _mm512_set1_ps(a[c]);
                    /* select +x where the weight bit is 1, -x where it is 0, then add */
                    a0 = _mm512_add_ps(a0, _mm512_mask_sub_ps(v, (__mmask16)~m[0], zero, v));
                    a1 = _mm512_add_ps(a1, _mm512_mask_sub_ps(v, (__mmask16)~m[1], zero, v));
                }
            }
        float tmp[CO_TILE];
        _mm512_storeu_ps(tmp, a0);
        _mm512_storeu_ps(tmp + 16, a1);
        float *o = out + (p0 + r) * g->cout;
        for (int t = 0; t < CO_TILE && co0 + t < g->cout; t++)
            o[co0 + t] = scale[co0 + t] * tmp[t] + bias[co0 + t];
    }
}

static void fgemm(const float *buf, const geom_t *g, const uint16_t *wm, const float *scale,
                  const float *bias, float *out, int threads) {
    long P = (long)g->n * g->oh * g->ow;
    const int rt = 4;
    long ptiles = (P + rt - 1) / rt, ctiles = g->cop / CO_TILE;
    int isa = g_isa;
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads)
    for (long t = 0; t < ptiles * ctiles; t++) {
        int co0 = (int)(t % ctiles) * CO_TILE;
        long p0 = (t / ctiles) * rt;
        int rows = (int)(P - p0 < rt ? P - p0 : rt);
        if (isa == ISA_AVX512) ftile_avx512(buf, g, wm, p0, rows, co0, scale, bias, out);
        else ftile_portable(buf, g, wm, p0, rows, co0, scale, bias, out);
    }
}

/* ------------------------------------------------------------------ Python glue */
static int get_buf(PyObject *obj, Py_buffer *view, int writable, const char *name,
                   Py_ssize_t itemsize) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected itemsize %zd, got %zd", name, itemsize,
                     view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int fill_geom(geom_t *g, Py_buffer *x, int cout, int kh, int kw, int sh, int sw, int ph,
                     int pw) {
    if (x->ndim != 4) {
        PyErr_SetString(PyExc_ValueError, "x must be 4-d NHWC");
        return -1;
    }
    g->n = (int)x->shape[0]; g->h = (int)x->shape[1]; g->w = (int)x->shape[2];
    g->c = (int)x->shape[3]; g->cw = (g->c + 63) / 64;
    g->kh = kh; g->kw = kw; g->sh = sh; g->sw = sw; g->ph = ph; g->pw = pw;
    g->hp = g->h + 2 * ph; g->wp = g->w + 2 * pw;
    g->oh = (g->hp - kh) / sh + 1; g->ow = (g->wp - kw) / sw + 1;
    g->cout = cout; g->cop = (cout + CO_TILE - 1) / CO_TILE * CO_TILE;
    g->k = (long)kh * kw * g->c;
    if (g->oh <= 0 || g->ow <= 0 || sh <= 0 || sw <= 0) {
        PyErr_SetString(PyExc_ValueError, "empty output: kernel larger than padded input");
        return -1;
    }
    return 0;
}

static PyObject *py_bconv(PyObject *self, PyObject *args) {
    PyObject *ox, *ow, *oscl, *obia, *oout;
    int kh, kw, sh, sw, ph, pw, threads;
    if (!PyArg_ParseTuple(args, "OOOOOiiiiiii", &ox, &ow, &oscl, &obia, &oout, &kh, &kw, &sh, &sw,
                          &ph, &pw, &threads))
        return NULL;
    Py_buffer x, w, scl, bia, out;
    if (get_buf(ox, &x, 0, "x", 4) < 0) return NULL;
    if (get_buf(ow, &w, 0, "wwords", 8) < 0) { PyBuffer_Release(&x); return NULL; }
    if (get_buf(oscl, &scl, 0, "scale", 4) < 0) { PyBuffer_Release(&x); PyBuffer_Release(&w); return NULL; }
    if (get_buf(obia, &bia, 0, "bias", 4) < 0) {
        PyBuffer_Release(&x); PyBuffer_Release(&w); PyBuffer_Release(&scl); return NULL;
    }
    if (get_buf(oout, &out, 1, "out", 4) < 0) {
        PyBuffer_Release(&x); PyBuffer_Release(&w); PyBuffer_Release(&scl); PyBuffer_Release(&bia);
        return NULL;
    }
    geom_t g;
    PyObject *ret = NULL;
    int cout = (int)(scl.len / 4);
    if (fill_geom(&g, &x, cout, kh, kw, sh, sw, ph, pw) < 0) goto done;
    if (w.len != (Py_ssize_t)kh * kw * g.cw * g.cop * 8 || bia.len != scl.len ||
        out.len != (Py_ssize_t)g.n * g.oh * g.ow * cout * 4) {
        PyErr_SetString(PyExc_ValueError, "bconv: buffer sizes do not match the geometry");
        goto done;
    }
    if (threads < 1) threads = 1;
    {
        size_t nbuf = (size_t)g.n * g.hp * g.wp * g.cw;
        uint64_t *buf = (uint64_t *)aligned_alloc(64, (nbuf * 8 + 63) / 64 * 64);
        if (!buf) { PyErr_NoMemory(); goto done; }
        Py_BEGIN_ALLOW_THREADS
        pack_padded((const float *)x.buf, &g, buf, threads);
        bgemm(buf, &g, (const uint64_t *)w.buf, (const float *)scl.buf, (const float *)bia.buf,
              (float *)out.buf, threads);
        Py_END_ALLOW_THREADS
        free(buf);
    }
    ret = Py_None; Py_INCREF(ret);
done:
    PyBuffer_Release(&x); PyBuffer_Release(&w); PyBuffer_Release(&scl); PyBuffer_Release(&bia);
    PyBuffer_Release(&out);
    return ret;
}

static PyObject *py_fconv(PyObject *self, PyObject *args) {
    PyObject *ox, *ow, *os, *ob, *oout;
    int kh, kw, sh, sw, ph, pw, threads;
    if (!PyArg_ParseTuple(args, "OOOOOiiiiiii", &ox, &ow, &os, &ob, &oout, &kh, &kw, &sh, &sw,
                          &ph, &pw, &threads))
        return NULL;
    Py_buffer x, w, s, b, out;
    if (get_buf(ox, &x, 0, "x", 4) < 0) return NULL;
    if (get_buf(ow, &w, 0, "wmask", 2) < 0) { PyBuffer_Release(&x); return NULL; }
    if (get_buf(os, &s, 0, "scale", 4) < 0) { PyBuffer_Release(&x); PyBuffer_Release(&w); return NULL; }
    if (get_buf(ob, &b, 0, "bias", 4) < 0) {
        PyBuffer_Release(&x); PyBuffer_Release(&w); PyBuffer_Release(&s); return NULL;
    }
    if (get_buf(oout, &out, 1, "out", 4) < 0) {
        PyBuffer_Release(&x); PyBuffer_Release(&w); PyBuffer_Release(&s); PyBuffer_Release(&b);
        return NULL;
    }
    geom_t g;
    PyObject *ret = NULL;
    int cout = (int)(s.len / 4);
    if (fill_geom(&g, &x, cout, kh, kw, sh, sw, ph, pw) < 0) goto done;
    if (w.len != (Py_ssize_t)kh * kw * g.c * (g.cop / 16) * 2 || b.len != s.len ||
        out.len != (Py_ssize_t)g.n * g.oh * g.ow * cout * 4) {
        PyErr_SetString(PyExc_ValueError, "fconv: buffer sizes do not match the geometry");
        goto done;
    }
    if (threads < 1) threads = 1;
    {
        size_t nbuf = (size_t)g.n * g.hp * g.wp * g.c;
        float *buf = (float *)aligned_alloc(64, (nbuf * 4 + 63) / 64 * 64);
        if (!buf) { PyErr_NoMemory(); goto done; }
        Py_BEGIN_ALLOW_THREADS
        pad_float((const float *)x.buf, &g, buf, threads);
        fgemm(buf, &g, (const uint16_t *)w.buf, (const float *)s.buf, (const float *)b.buf,
              (float *)out.buf, threads);
        Py_END_ALLOW_THREADS
        free(buf);
    }
    ret = Py_None; Py_INCREF(ret);
done:
    PyBuffer_Release(&x); PyBuffer_Release(&w); PyBuffer_Release(&s); PyBuffer_Release(&b);
    PyBuffer_Release(&out);
    return ret;
}

static PyObject *py_pack_nhwc(PyObject *self, PyObject *args) {
    PyObject *ox, *oout;
    int threads;
    if (!PyArg_ParseTuple(args, "OOi", &ox, &oout, &threads)) return NULL;
    Py_buffer x, out;
    if (get_buf(ox, &x, 0, "x", 4) < 0) return NULL;
    if (get_buf(oout, &out, 1, "out", 8) < 0) { PyBuffer_Release(&x); return NULL; }
    geom_t g;
    PyObject *ret = NULL;
    if (fill_geom(&g, &x, 1, 1, 1, 1, 1, 0, 0) < 0) goto done;
    if (out.len != (Py_ssize_t)g.n * g.h * g.w * g.cw * 8) {
        PyErr_SetString(PyExc_ValueError, "pack_nhwc: out has the wrong size");
        goto done;
    }
    if (threads < 1) threads = 1;
    Py_BEGIN_ALLOW_THREADS
    pack_padded((const float *)x.buf, &g, (uint64_t *)out.buf, threads);
    Py_END_ALLOW_THREADS
    ret = Py_None; Py_INCREF(ret);
done:
    PyBuffer_Release(&x); PyBuffer_Release(&out);
    return ret;
}

static PyObject *py_isa(PyObject *self, PyObject *noargs) {
    return PyUnicode_FromString(ISA_NAMES[g_isa]);
}

static PyObject *py_best_isa(PyObject *self, PyObject *noargs) {
    return PyUnicode_FromString(ISA_NAMES[g_best_isa]);
}

static PyObject *py_set_isa(PyObject *self, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    for (int i = 0; i <= g_best_isa; i++)
        if (strcmp(name, ISA_NAMES[i]) == 0) { g_isa = i; Py_RETURN_NONE; }
    PyErr_Format(PyExc_ValueError, "ISA %s not available on this CPU (best: %s)", name,
                 ISA_NAMES[g_best_isa]);
    return NULL;
}

static PyObject *py_max_threads(PyObject *self, PyObject *noargs) {
#ifdef _OPENMP
    return PyLong_FromLong(omp_get_num_procs());
#else
    return PyLong_FromLong(1);
#endif
}

static PyMethodDef methods[] = {
    {"bconv", py_bconv, METH_VARARGS, "binary-activation binary-weight conv (XNOR-popcount)"},
    {"fconv", py_fconv, METH_VARARGS, "float-activation binary-weight conv (sign-select-add)"},
    {"pack_nhwc", py_pack_nhwc, METH_VARARGS, "pack signs of NHWC floats into uint64 words"},
    {"isa", py_isa, METH_NOARGS, "instruction set in use"},
    {"best_isa", py_best_isa, METH_NOARGS, "best instruction set this CPU supports"},
    {"set_isa", py_set_isa, METH_VARARGS, "force an instruction set (portable/avx2/avx512)"},
    {"max_threads", py_max_threads, METH_NOARGS, "processors OpenMP sees"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel",
                                    "slimface binary-layer CPU kernels", -1, methods};

PyMODINIT_FUNC PyInit__kernel(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512vpopcntdq"))
        g_best_isa = ISA_AVX512;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        g_best_isa = ISA_AVX2;
    g_isa = g_best_isa;
    return PyModule_Create(&module);
}
