/*
 * slimface binary-layer kernels (CPython extension; NumPy fallback: _kernel_py.py).
 *
 * Conventions shared with slimface.compress.quantizers and slimface.runtime.kernel:
 *   - sign(x) = +1 for x >= 0 (bit 1), -1 for x < 0 (bit 0); NaN packs as -1.
 *   - Activations are NHWC. Along channels, bit b of 32-bit word w holds channel 32*w + b;
 *     bits past C are 0 in both activations and weights, so they never count. 32-bit words
 *     (not 64) because 32-channel layers (Face-ResNet's Conv1b) would waste half of every
 *     64-bit word, and 16 int32 counts per register halve the float epilogue's work.
 *   - Binary-activation convs pad with +1 (sign(0) = +1, i.e. zero padding before the sign).
 *   - Weights (prepared by kernel.prepare_*): words[(i*kw + j)*Cw + w][co], co padded to 64.
 *
 * Functions (outputs are the caller's, or made by the alloc it gives Plan; the GIL is released):
 *   pack_nhwc(x f32[N,H,W,C], out u32[N,H,W,Cw], threads)
 *   Plan(wwords u32[KK*Cw, CoP], affine f32[2, CoP], C, Cout, kh, kw, sh, sw, ph, pw,
 *        threads).call(x f32[N,H,W,C] | u32[N,H,W,Cw])
 *        -> out f32[N,OH,OW,Cout] | u32[N,OH,OW,ceil(Cout/32)]  (see Plan below)
 *       (word input: a previous layer's sign output; word output: signs of the floats, for a
 *       binary layer feeding another; the weights are acquired once per layer)
 *       out = scale * dot + bias with dot = K - 2 popcount(x_bits XOR w_bits) (K = kh*kw*C),
 *       evaluated as affine[0] * popcount + affine[1], the affine folded once per layer by
 *       kernel.fold_affine (-2 scale, K scale + bias): the epilogue is then one convert, one
 *       fma and one store per 16 outputs, a third of the work on 1x1 convs of 64 channels.
 *   fconv(x f32[N,H,W,C], wpm f32[CoP/16, KK*C, 16] (+-1), scale f32[Cout], bias f32[Cout], out,
 *         kh, kw, sh, sw, ph, pw, threads)
 *       out = scale * sum_k (w_k ? x_k : -x_k) + bias   (zero padding)
 *   isa() -> "avx512" | "avx2" | "portable";  set_isa(name) forces a path (tests, benchmarks).
 *
 * threads is an upper bound: calls too small to repay waking a second OpenMP thread (a few
 * microseconds) run on one.
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

#define CO_TILE 64
#define ISA_PORTABLE 0
#define ISA_AVX2 1
#define ISA_AVX512 2
/* Bit operations (word x output channel) below which one thread does the whole call. */
#define MIN_PARALLEL_WORK (1L << 17)
/* Float outputs from this size on (when 64-byte aligned, kernel.py allocates them so) are
 * written with non-temporal stores. A batch-32 output (26 MB for MobileFaceNet's 64->256 at
 * 28x28) does not stay in cache anyway, and ordinary stores read every line before writing
 * it: streaming took that conv from 3.24 to 0.91 ms (one thread, bench kernels). Smaller
 * outputs are left in cache for the next layer: a 6 MB output (128->64 at 28x28, batch 32)
 * took 0.48 ms with ordinary stores against 0.61-0.72 streamed, while at 12 MB streaming
 * still won (64->128 at 28x28: 0.46-0.59 against 0.70-0.80 ms; one thread, two runs of
 * each in separate processes). Mirrored in kernel.py. */
#define STREAM_MIN_BYTES ((size_t)8 << 20)

static int g_isa = ISA_PORTABLE;
static int g_best_isa = ISA_PORTABLE;
static const char *ISA_NAMES[] = {"portable", "avx2", "avx512"};

/* ------------------------------------------------------------------ geometry */
typedef struct {
    int n, h, w, c, cw;         /* input; cw = 32-bit words per pixel */
    int kh, kw, sh, sw, ph, pw; /* conv */
    int oh, ow, cout, cop;      /* output; cop = cout padded to CO_TILE */
    int hp, wp;                 /* padded input */
    int sign_out, cwo;          /* write sign bits (cwo words per pixel) instead of floats */
    int stream;                 /* float output written with non-temporal stores */
    const uint8_t *nib;         /* the weights in the AVX2 layout (nib_weights), or NULL */
} geom_t;

/* ------------------------------------------------------------------ packing */
static inline uint32_t pack32_portable(const float *x, int count) {
    uint32_t word = 0;
    for (int b = 0; b < count; b++) word |= (uint32_t)(x[b] >= 0.0f) << b;
    return word;
}

__attribute__((target("avx512f")))
static inline uint32_t pack32_avx512(const float *x, int count) {
    if (count == 32) {
        uint32_t m0 = _mm512_cmp_ps_mask(_mm512_loadu_ps(x), _mm512_setzero_ps(), _CMP_GE_OQ);
        uint32_t m1 = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + 16), _mm512_setzero_ps(), _CMP_GE_OQ);
        return m0 | (m1 << 16);
    }
    return pack32_portable(x, count);
}

__attribute__((target("avx2")))
static inline uint32_t pack32_avx2(const float *x, int count) {
    if (count == 32) {
        uint32_t word = 0;
        for (int q = 0; q < 4; q++) {
            __m256 v = _mm256_cmp_ps(_mm256_loadu_ps(x + 8 * q), _mm256_setzero_ps(), _CMP_GE_OQ);
            word |= (uint32_t)_mm256_movemask_ps(v) << (8 * q);
        }
        return word;
    }
    return pack32_portable(x, count);
}

/* One run of npix contiguous pixels (c channels each) into cw words per pixel. One function
 * per ISA around the whole run: a per-word call across target attributes cannot be inlined,
 * and on 1x1 convs that call cost as much as the popcount work. */
#define PACK_RUN(NAME, PACK32)                                                           \
    static void NAME(const float *x, long npix, int c, int cw, uint32_t *d) {           \
        for (long p = 0; p < npix; p++, x += c, d += cw)                                 \
            for (int w = 0; w < cw; w++) {                                               \
                int left = c - 32 * w;                                                   \
                d[w] = PACK32(x + 32 * w, left < 32 ? left : 32);                        \
            }                                                                            \
    }
__attribute__((target("avx512f"))) PACK_RUN(pack_run_avx512_any, pack32_avx512)

/* When C is a multiple of 32 the run is one contiguous stream of whole words: four words
 * per step with no per-word tail test, which had made packing a third of a 1x1 conv with
 * 128 input channels and 64 outputs. */
__attribute__((target("avx512f")))
static void pack_run_avx512(const float *x, long npix, int c, int cw, uint32_t *d) {
    if (c % 32) {
        pack_run_avx512_any(x, npix, c, cw, d);
        return;
    }
    const __m512 zero = _mm512_setzero_ps();
    long words = npix * cw, i = 0;
#define PACK_WORD(k)                                                                      \
    d[i + k] = (uint32_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(x + 32 * (i + k)), zero, _CMP_GE_OQ) | \
               (uint32_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(x + 32 * (i + k) + 16), zero,       \
                                            _CMP_GE_OQ) << 16;
    for (; i + 4 <= words; i += 4) {
        PACK_WORD(0) PACK_WORD(1) PACK_WORD(2) PACK_WORD(3)
    }
    for (; i < words; i++) {
        PACK_WORD(0)
    }
#undef PACK_WORD
}
__attribute__((target("avx2"))) PACK_RUN(pack_run_avx2, pack32_avx2)
PACK_RUN(pack_run_portable, pack32_portable)

static inline void pack_run(const float *x, long npix, int c, int cw, uint32_t *d, int isa) {
    if (isa == ISA_AVX512) pack_run_avx512(x, npix, c, cw, d);
    else if (isa == ISA_AVX2) pack_run_avx2(x, npix, c, cw, d);
    else pack_run_portable(x, npix, c, cw, d);
}

/* Word that stands for an all-(+1) pixel: the valid channel bits set. */
static inline uint32_t pad_word(int c, int w) {
    int left = c - 32 * w;
    return left >= 32 ? ~(uint32_t)0 : (((uint32_t)1 << left) - 1);
}

static void fill_pad(uint32_t *d, long npix, int c, int cw) {
    for (long p = 0; p < npix; p++, d += cw)
        for (int w = 0; w < cw; w++) d[w] = pad_word(c, w);
}

/* The padded packed input [N, HP, WP, Cw] from float activations x (packing their signs) or
 * from sign words xw (a previous layer's sign output, copied); the border is +1. */
static void pack_padded(const float *x, const uint32_t *xw, const geom_t *g, uint32_t *buf,
                        int threads) {
    long rows = (long)g->n * g->hp;
    int isa = g_isa;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (long r = 0; r < rows; r++) {
        int n = (int)(r / g->hp), y = (int)(r % g->hp) - g->ph;
        uint32_t *dst = buf + r * g->wp * g->cw;
        if (y < 0 || y >= g->h) {
            fill_pad(dst, g->wp, g->c, g->cw);
            continue;
        }
        fill_pad(dst, g->pw, g->c, g->cw);
        uint32_t *row = dst + (long)g->pw * g->cw;
        long src = ((long)n * g->h + y) * g->w;
        if (xw) memcpy(row, xw + src * g->cw, sizeof(uint32_t) * (size_t)g->w * g->cw);
        else pack_run(x + src * g->c, g->w, g->c, g->cw, row, isa);
        fill_pad(row + (long)g->w * g->cw, g->pw, g->c, g->cw);
    }
}

/* ------------------------------------------------------------------ popcount GEMM */
#define R512 6   /* output pixels per AVX-512 tile */
#define RMAX 8   /* output pixels per tile, any path */

/* Pixel index, on the padded input grid, of the top-left corner of the receptive fields of
 * output pixels p0 .. p0+rows-1. One division per tile, then steps: on 1x1 convs the
 * per-pixel work is a few dozen instructions, and three 64-bit divisions per pixel cost as
 * much. */
static inline void field_pixels(const geom_t *g, long p0, int rows, long *pix) {
    long per_img = (long)g->oh * g->ow;
    long n = p0 / per_img, rem = p0 % per_img;
    long oy = rem / g->ow, ox = rem % g->ow;
    for (int r = 0; r < rows; r++) {
        pix[r] = (n * g->hp + oy * g->sh) * g->wp + ox * g->sw;
        if (++ox == g->ow) {
            ox = 0;
            if (++oy == g->oh) { oy = 0; n++; }
        }
    }
}

/* Base pointers of those fields in the padded packed input. A field's kh kernel rows start
 * wp*cw words apart; each row's kw*cw words are contiguous, in the same order as the weight
 * rows (i*kw + j)*cw + w. */
static inline void field_bases(const uint32_t *buf, const geom_t *g, long p0, int rows,
                               const uint32_t **bases) {
    long pix[RMAX];
    field_pixels(g, p0, rows, pix);
    for (int r = 0; r < rows; r++) bases[r] = buf + pix[r] * g->cw;
}

/* Output pixel p's channels co0 .. co0+CO_TILE-1 from their popcounts: floats
 * m2 * c + k2, or (sign_out) the signs of those floats as bits, 32 channels per word. */
static void emit_row(const geom_t *g, void *out, long p, int co0, const int32_t *cnt,
                     const float *m2, const float *k2) {
    int valid = g->cout - co0 < CO_TILE ? g->cout - co0 : CO_TILE;
    if (!g->sign_out) {
        float *o = (float *)out + p * g->cout + co0;
        for (int t = 0; t < valid; t++) o[t] = fmaf((float)cnt[t], m2[co0 + t], k2[co0 + t]);
        return;
    }
    uint32_t *o = (uint32_t *)out + p * g->cwo + co0 / 32;
    for (int w = 0; w * 32 < valid; w++) {
        uint32_t word = 0;
        for (int t = 32 * w; t < valid && t < 32 * w + 32; t++)
            word |= (uint32_t)(fmaf((float)cnt[t], m2[co0 + t], k2[co0 + t]) >= 0.0f) << (t - 32 * w);
        o[w] = word;
    }
}

static void tile_portable(const uint32_t *const *bases, const geom_t *g, const uint32_t *ww,
                          long p0, int rows, int co0, const float *m2, const float *k2,
                          void *out) {
    int span = g->kw * g->cw;
    for (int r = 0; r < rows; r++) {
        int32_t acc[CO_TILE] = {0};
        for (int i = 0; i < g->kh; i++) {
            const uint32_t *a = bases[r] + (long)i * g->wp * g->cw;
            const uint32_t *b = ww + (long)i * span * g->cop + co0;
            for (int w = 0; w < span; w++, b += g->cop) {
                uint32_t av = a[w];
                for (int t = 0; t < CO_TILE; t++) acc[t] += __builtin_popcount(av ^ b[t]);
            }
        }
        emit_row(g, out, p0 + r, co0, acc, m2, k2);
    }
}

#define AVX512_TARGET "avx512f,avx512dq,avx512vl,avx512vpopcntdq,fma"
/* One output pixel's 64 channels: 4 registers of 16 int32 popcounts c -> m2 * c + k2, where
 * m2 = -2 scale and k2 = K scale + bias (= scale * (K - 2c) + bias), padded to CoP. */
/* With sign_out, each 16 channels become the 16-bit mask y >= 0 (NaN -> 0, as packing
 * does), written as half of an output word: a binary layer feeding another writes 1 bit per
 * output instead of 32 and the next layer skips its packing pass. */
__attribute__((target(AVX512_TARGET)))
static inline void store_row_avx512(__m512i a0, __m512i a1, __m512i a2, __m512i a3,
                                    const geom_t *g, void *out, long p, int co0, int valid,
                                    const float *m2, const float *k2) {
    __m512i acc[4] = {a0, a1, a2, a3};
    float *o = (float *)out + p * g->cout + co0;
    uint16_t *ob = (uint16_t *)((uint32_t *)out + p * g->cwo) + co0 / 16;
    for (int q = 0; q < 4; q++) {
        __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[q]), _mm512_loadu_ps(m2 + 16 * q),
                                   _mm512_loadu_ps(k2 + 16 * q));
        int left = valid - 16 * q;
        if (left <= 0) break;
        __mmask16 m = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
        if (g->sign_out) {
            ob[q] = (uint16_t)(_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GE_OQ) & m);
            if (left < 32 && (q & 1) == 0) ob[q + 1] = 0;  /* the word's unused upper half */
        } else if (left >= 16) {
            if (g->stream) _mm512_stream_ps(o + 16 * q, y);
            else _mm512_storeu_ps(o + 16 * q, y);
        } else {
            _mm512_mask_storeu_ps(o + 16 * q, m, y);
        }
    }
}

#define XPOP(acc, a, b) acc = _mm512_add_epi32(acc, _mm512_popcnt_epi32(_mm512_xor_si512(a, b)))
#define ROW_STEP(r)                                        \
    {                                                      \
        __m512i a = _mm512_set1_epi32((int)p##r[w]);       \
        XPOP(s##r##0, a, b0); XPOP(s##r##1, a, b1);        \
        XPOP(s##r##2, a, b2); XPOP(s##r##3, a, b3);        \
    }
#define ROW_DECL(r) __m512i s##r##0 = z, s##r##1 = z, s##r##2 = z, s##r##3 = z;
#define ROW_PTR(r) const uint32_t *p##r = bases[r] + off;
#define ROW_STORE(r) store_row_avx512(s##r##0, s##r##1, s##r##2, s##r##3, g, out, p0 + r, co0, \
                                      valid, m2 + co0, k2 + co0);
#define FLOAT_ROW(r, STORE)                                                               \
    STORE(o + (long)r * g->cout, _mm512_fmadd_ps(_mm512_cvtepi32_ps(s##r##0), m0, k0));     \
    STORE(o + (long)r * g->cout + 16, _mm512_fmadd_ps(_mm512_cvtepi32_ps(s##r##1), m1, k1)); \
    STORE(o + (long)r * g->cout + 32, _mm512_fmadd_ps(_mm512_cvtepi32_ps(s##r##2), m2v, k2v)); \
    STORE(o + (long)r * g->cout + 48, _mm512_fmadd_ps(_mm512_cvtepi32_ps(s##r##3), m3, k3));
#define SIGN16(acc, m, k) \
    _mm512_cmp_ps_mask(_mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), m, k), _mm512_setzero_ps(), _CMP_GE_OQ)
#define SIGN_ROW(r)                                                                           \
    o[(long)r * g->cwo] = (uint32_t)SIGN16(s##r##0, m0, k0) | (uint32_t)SIGN16(s##r##1, m1, k1) << 16; \
    o[(long)r * g->cwo + 1] = (uint32_t)SIGN16(s##r##2, m2v, k2v) | (uint32_t)SIGN16(s##r##3, m3, k3) << 16;
#define LOAD_B                                                                  \
    __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 16);       \
    __m512i b2 = _mm512_loadu_si512(b + 32), b3 = _mm512_loadu_si512(b + 48);

/* R512 output pixels x 64 output channels: 24 accumulators, 4 weight registers. fixed_span
 * > 0 is a compile-time word count for 1x1 convs (kh = 1): with 32 or 64 input channels the
 * word loop is 1-2 iterations, and unrolled the first popcount initialises the accumulator
 * instead of being added to zero (64->C_out 1x1 convs 10-15% faster). Unrolling 4 words
 * (128 channels) measured slower: the hoisted weight loads spill registers. */
__attribute__((target(AVX512_TARGET), always_inline))
static inline void tile_avx512_rows(const uint32_t *const *bases, const geom_t *g,
                                    const uint32_t *ww, long p0, int co0, const float *m2,
                                    const float *k2, void *out, const int fixed_span) {
    const __m512i z = _mm512_setzero_si512();
    const int span = fixed_span > 0 ? fixed_span : g->kw * g->cw;
    const int kh = fixed_span > 0 ? 1 : g->kh;
    ROW_DECL(0) ROW_DECL(1) ROW_DECL(2) ROW_DECL(3) ROW_DECL(4) ROW_DECL(5)
    for (int i = 0; i < kh; i++) {
        long off = (long)i * g->wp * g->cw;
        ROW_PTR(0) ROW_PTR(1) ROW_PTR(2) ROW_PTR(3) ROW_PTR(4) ROW_PTR(5)
        const uint32_t *b = ww + (long)i * span * g->cop + co0;
        for (int w = 0; w < span; w++, b += g->cop) {
            LOAD_B
            ROW_STEP(0) ROW_STEP(1) ROW_STEP(2) ROW_STEP(3) ROW_STEP(4) ROW_STEP(5)
        }
    }
    int valid = g->cout - co0 < CO_TILE ? g->cout - co0 : CO_TILE;
    if (valid == CO_TILE) {
        /* Whole tiles: the affine in registers once per tile. Through the generic path it
         * was reloaded for every row (a store through out may alias it). */
        const __m512 m0 = _mm512_loadu_ps(m2 + co0), m1 = _mm512_loadu_ps(m2 + co0 + 16);
        const __m512 m2v = _mm512_loadu_ps(m2 + co0 + 32), m3 = _mm512_loadu_ps(m2 + co0 + 48);
        const __m512 k0 = _mm512_loadu_ps(k2 + co0), k1 = _mm512_loadu_ps(k2 + co0 + 16);
        const __m512 k2v = _mm512_loadu_ps(k2 + co0 + 32), k3 = _mm512_loadu_ps(k2 + co0 + 48);
        if (g->sign_out) {
            uint32_t *o = (uint32_t *)out + p0 * g->cwo + co0 / 32;
            SIGN_ROW(0) SIGN_ROW(1) SIGN_ROW(2) SIGN_ROW(3) SIGN_ROW(4) SIGN_ROW(5)
            return;
        }
        float *o = (float *)out + p0 * g->cout + co0;
        if (g->stream) {
            FLOAT_ROW(0, _mm512_stream_ps) FLOAT_ROW(1, _mm512_stream_ps)
            FLOAT_ROW(2, _mm512_stream_ps) FLOAT_ROW(3, _mm512_stream_ps)
            FLOAT_ROW(4, _mm512_stream_ps) FLOAT_ROW(5, _mm512_stream_ps)
        } else {
            FLOAT_ROW(0, _mm512_storeu_ps) FLOAT_ROW(1, _mm512_storeu_ps)
            FLOAT_ROW(2, _mm512_storeu_ps) FLOAT_ROW(3, _mm512_storeu_ps)
            FLOAT_ROW(4, _mm512_storeu_ps) FLOAT_ROW(5, _mm512_storeu_ps)
        }
        return;
    }
    ROW_STORE(0) ROW_STORE(1) ROW_STORE(2) ROW_STORE(3) ROW_STORE(4) ROW_STORE(5)
}

__attribute__((target(AVX512_TARGET)))
static void tile_avx512(const uint32_t *const *bases, const geom_t *g, const uint32_t *ww,
                        long p0, int rows, int co0, const float *m2, const float *k2,
                        void *out) {
    if (rows == R512) {
        int words = g->kh == 1 && g->kw == 1 ? g->cw : 0;
        if (words == 1) tile_avx512_rows(bases, g, ww, p0, co0, m2, k2, out, 1);
        else if (words == 2) tile_avx512_rows(bases, g, ww, p0, co0, m2, k2, out, 2);
        else tile_avx512_rows(bases, g, ww, p0, co0, m2, k2, out, 0);
        return;
    }
    const __m512i z = _mm512_setzero_si512();
    const int span = g->kw * g->cw;
    int valid = g->cout - co0 < CO_TILE ? g->cout - co0 : CO_TILE;
    for (int r = 0; r < rows; r++) {
        ROW_DECL(0)
        for (int i = 0; i < g->kh; i++) {
            const uint32_t *p0r = bases[r] + (long)i * g->wp * g->cw;
            const uint32_t *b = ww + (long)i * span * g->cop + co0;
            for (int w = 0; w < span; w++, b += g->cop) {
                LOAD_B
                __m512i a = _mm512_set1_epi32((int)p0r[w]);
                XPOP(s00, a, b0); XPOP(s01, a, b1); XPOP(s02, a, b2); XPOP(s03, a, b3);
            }
        }
        store_row_avx512(s00, s01, s02, s03, g, out, p0 + r, co0, valid, m2 + co0, k2 + co0);
    }
}

/* AVX2 has no vector popcount. The usual nibble lookup (XOR, split nibbles, two VPSHUFB,
 * widen) costs 8 operations per 256 bits of XOR. Here the lookup is turned around: for an
 * input byte of one pixel, the table T_a[n] = popcount(a ^ n) over the 16 nibble values n
 * is one of 16 constant tables (picked by a scalar nibble of a, a broadcast load), and the
 * weights are stored as nibbles, one byte per output channel (AVX2 layout, nib_weights).
 * One VPSHUFB then yields the XOR-popcounts of that input nibble against 32 output
 * channels: 2 shuffles and 2 adds per 32 channels x 8 input bits, no XOR, no widening in
 * the inner loop. Counts accumulate in bytes (at most 8 per input byte, so 31 bytes fit)
 * and are flushed to 16-bit lanes; K < 2^16 bits (nib_fits). */
static uint8_t g_nib_tab[16][16] __attribute__((aligned(16)));
/* Byte lane j of a 32-channel group holds channel NIB_CH[j]: the even and odd 16-bit lanes
 * of each 128-bit half, zero-extended, then come out as channels 0-7, 8-15, 16-23, 24-31. */
static const uint8_t NIB_CH[32] = {0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15,
                                   16, 24, 17, 25, 18, 26, 19, 27, 20, 28, 21, 29, 22, 30, 23, 31};
#define NIB_GMAX 8   /* 32-channel groups per pass over a pixel's field (256 channels) */

static void init_nib_tab(void) {
    for (int a = 0; a < 16; a++)
        for (int n = 0; n < 16; n++) g_nib_tab[a][n] = (uint8_t)__builtin_popcount(a ^ n);
}

static inline int nib_fits(const geom_t *g) { return (long)g->kh * g->kw * g->cw * 32 < 65536; }

/* Weights words[(kk*Cw + w)][co] -> nib[(kb * groups + gi) * 64 + {0..31 | 32..63}]: for
 * input byte kb (byte kb % 4 of word kb / 4) and 32-channel group gi, the low nibbles of
 * the group's 32 channels, then the high nibbles (lane j = channel NIB_CH[j]). */
static uint8_t *nib_weights(const uint32_t *ww, long kwords, int cop) {
    int groups = cop / 32;
    size_t bytes = (size_t)kwords * 4 * groups * 64;
    uint8_t *nib = (uint8_t *)aligned_alloc(64, bytes ? bytes : 64);
    if (!nib) return NULL;
    for (long k = 0; k < kwords; k++)
        for (int b = 0; b < 4; b++)
            for (int gi = 0; gi < groups; gi++) {
                uint8_t *d = nib + ((k * 4 + b) * groups + gi) * 64;
                for (int j = 0; j < 32; j++) {
                    uint8_t byte = (uint8_t)(ww[k * cop + 32 * gi + NIB_CH[j]] >> (8 * b));
                    d[j] = byte & 15;
                    d[32 + j] = byte >> 4;
                }
            }
    return nib;
}

/* One output pixel (its field at `field`) x groups gi0 .. gi0+G-1: 16-bit counts E (even
 * byte lanes) and O (odd). G is a compile-time constant at every call (always_inline).
 * Measured slower (64->64 3x3 at 54x46, one thread): two pixels per step sharing the weight
 * loads (0.26 -> 0.32 ms), and a word per step with the table offsets shifted out of it
 * (0.26 -> 0.31 ms). */
__attribute__((target("avx2,fma"), always_inline))
static inline void nib_pixel(const uint32_t *field, const geom_t *g, int gi0, const int G,
                             __m256i *E, __m256i *O) {
    const int groups = g->cop / 32;
    const int rowbytes = g->kw * g->cw * 4;
    const __m256i low = _mm256_set1_epi16(0x00ff);
    for (int q = 0; q < G; q++) E[q] = O[q] = _mm256_setzero_si256();
    for (int i = 0; i < g->kh; i++) {
        const uint8_t *a = (const uint8_t *)(field + (long)i * g->wp * g->cw);
        const uint8_t *w = g->nib + ((long)i * rowbytes * groups + gi0) * 64;
        for (int b0 = 0; b0 < rowbytes; b0 += 31) {
            int b1 = rowbytes - b0 < 31 ? rowbytes : b0 + 31;
            __m256i acc[NIB_GMAX];
            for (int q = 0; q < G; q++) acc[q] = _mm256_setzero_si256();
            for (int b = b0; b < b1; b++, w += (long)groups * 64) {
                unsigned v = a[b];
                __m256i tlo = _mm256_broadcastsi128_si256(
                    _mm_load_si128((const __m128i *)g_nib_tab[v & 15]));
                __m256i thi = _mm256_broadcastsi128_si256(
                    _mm_load_si128((const __m128i *)g_nib_tab[v >> 4]));
                for (int q = 0; q < G; q++) {
                    __m256i lo = _mm256_shuffle_epi8(tlo, _mm256_load_si256((const __m256i *)(w + 64 * q)));
                    __m256i hi = _mm256_shuffle_epi8(thi, _mm256_load_si256((const __m256i *)(w + 64 * q + 32)));
                    acc[q] = _mm256_add_epi8(acc[q], _mm256_add_epi8(lo, hi));
                }
            }
            for (int q = 0; q < G; q++) {
                E[q] = _mm256_add_epi16(E[q], _mm256_and_si256(acc[q], low));
                O[q] = _mm256_add_epi16(O[q], _mm256_srli_epi16(acc[q], 8));
            }
        }
    }
}

/* Group gi of output pixel p from its counts: floats m2 * c + k2, or their signs as one
 * word (sign_out). */
__attribute__((target("avx2,fma")))
static inline void nib_store(const geom_t *g, void *out, long p, int gi, __m256i E, __m256i O,
                             const float *m2, const float *k2) {
    int co = 32 * gi, valid = g->cout - co < 32 ? g->cout - co : 32;
    __m256i c[4] = {_mm256_cvtepu16_epi32(_mm256_castsi256_si128(E)),
                    _mm256_cvtepu16_epi32(_mm256_castsi256_si128(O)),
                    _mm256_cvtepu16_epi32(_mm256_extracti128_si256(E, 1)),
                    _mm256_cvtepu16_epi32(_mm256_extracti128_si256(O, 1))};
    __m256 y[4];
    for (int k = 0; k < 4; k++)
        y[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c[k]), _mm256_loadu_ps(m2 + co + 8 * k),
                               _mm256_loadu_ps(k2 + co + 8 * k));
    if (g->sign_out) {
        uint32_t word = 0;
        for (int k = 0; k < 4; k++)
            word |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(y[k], _mm256_setzero_ps(),
                                                               _CMP_GE_OQ)) << (8 * k);
        if (valid < 32) word &= ((uint32_t)1 << valid) - 1;
        ((uint32_t *)out)[p * g->cwo + gi] = word;
        return;
    }
    float *o = (float *)out + p * g->cout + co;
    if (valid == 32) {
        if (g->stream)  /* rows start on 64-byte lines: C_out % 16 == 0, aligned output */
            for (int k = 0; k < 4; k++) _mm256_stream_ps(o + 8 * k, y[k]);
        else
            for (int k = 0; k < 4; k++) _mm256_storeu_ps(o + 8 * k, y[k]);
        return;
    }
    float tmp[32];
    for (int k = 0; k < 4; k++) _mm256_storeu_ps(tmp + 8 * k, y[k]);
    memcpy(o, tmp, sizeof(float) * (size_t)valid);
}

/* Output pixels p0 .. p0+rows-1 (fields at bases) x channel tiles [ct0, ct1): groups of 32
 * channels in passes of up to NIB_GMAX, skipping groups wholly past C_out. */
__attribute__((target("avx2,fma")))
static void tile_avx2(const uint32_t *const *bases, const geom_t *g, long p0, int rows,
                      int ct0, int ct1, const float *m2, const float *k2, void *out) {
    int gend = (g->cout + 31) / 32, g0 = 2 * ct0, g1 = 2 * ct1 < gend ? 2 * ct1 : gend;
    __m256i E[NIB_GMAX], O[NIB_GMAX];
    for (int gi = g0; gi < g1; gi += NIB_GMAX) {
        int G = g1 - gi < NIB_GMAX ? g1 - gi : NIB_GMAX;
        for (int r = 0; r < rows; r++) {
            switch (G) {
#define NIB_CASE(n) case n: nib_pixel(bases[r], g, gi, n, E, O); break;
                NIB_CASE(1) NIB_CASE(2) NIB_CASE(3) NIB_CASE(4)
                NIB_CASE(5) NIB_CASE(6) NIB_CASE(7) NIB_CASE(8)
#undef NIB_CASE
            }
            for (int q = 0; q < G; q++) nib_store(g, out, p0 + r, gi + q, E[q], O[q], m2, k2);
        }
    }
}

/* 1x1 convs without padding use every input pixel at most once, so a separate packing pass
 * would write and re-read a buffer for nothing: each tile packs its own pixels from x. */
static inline int packs_in_tile(const geom_t *g) {
    return g->kh == 1 && g->kw == 1 && g->ph == 0 && g->pw == 0;
}

/* Packed words of output pixels p0 .. p0+rows-1 (1x1 convs), straight from x into dst. */
static inline void pack_tile_pixels(const float *x, const geom_t *g, long p0, int rows,
                                    uint32_t *dst, const uint32_t **bases, int isa) {
    for (int r = 0; r < rows; r++) bases[r] = dst + (long)r * g->cw;
    if (g->sh == 1 && g->sw == 1) {  /* the tile's pixels are contiguous in x */
        pack_run(x + p0 * g->c, rows, g->c, g->cw, dst, isa);
        return;
    }
    long pix[RMAX];  /* no padding here, so the padded grid is x's own */
    field_pixels(g, p0, rows, pix);
    for (int r = 0; r < rows; r++) pack_run(x + pix[r] * g->c, 1, g->c, g->cw, bases[r], isa);
}

/* One pixel tile (rows output pixels from p0) across channel tiles [ct0, ct1). The AVX-512
 * copy is compiled with its target so the tile kernels inline into it: on 1x1 convs a tile
 * is a few dozen instructions and a call per tile cost a fifth of the time. */
#define PIXEL_TILE_BODY(TILE)                                                             \
    {                                                                                     \
        const uint32_t *bases[RMAX];                                                      \
        uint32_t local[RMAX * 64]; /* up to 2048 input channels packed per pixel */       \
        if (buf) field_bases(buf, g, p0, rows, bases);                                    \
        else pack_tile_pixels(x, g, p0, rows, local, bases, isa);                         \
        for (int ct = ct0; ct < ct1; ct++)                                                \
            TILE(bases, g, ww, p0, rows, ct * CO_TILE, m2, k2, out);                      \
    }
#define PIXEL_TILE_ARGS                                                                   \
    (const float *x, const uint32_t *buf, const geom_t *g, const uint32_t *ww,            \
     const float *m2, const float *k2, void *out, long p0, int rows, int ct0, int ct1,    \
     int isa)

__attribute__((target(AVX512_TARGET)))
static void pixel_tile_avx512 PIXEL_TILE_ARGS PIXEL_TILE_BODY(tile_avx512)
__attribute__((target("avx2,fma")))
static void pixel_tile_avx2 PIXEL_TILE_ARGS {
    const uint32_t *bases[RMAX];
    uint32_t local[RMAX * 64];
    (void)ww;
    if (buf) field_bases(buf, g, p0, rows, bases);
    else pack_tile_pixels(x, g, p0, rows, local, bases, isa);
    tile_avx2(bases, g, p0, rows, ct0, ct1, m2, k2, out);
}
static void pixel_tile_portable PIXEL_TILE_ARGS PIXEL_TILE_BODY(tile_portable)

/* buf: the padded packed input, or NULL when packs_in_tile (then x is read directly). */
static void bgemm(const float *x, const uint32_t *buf, const geom_t *g, const uint32_t *ww,
                  const float *m2, const float *k2, void *out, int threads) {
    long P = (long)g->n * g->oh * g->ow;
    int isa = g_isa;
    int rt = isa == ISA_AVX512 ? R512 : RMAX;
    long ptiles = (P + rt - 1) / rt;
    int ctiles = g->cop / CO_TILE;
    void (*tile)PIXEL_TILE_ARGS = isa == ISA_AVX512 ? pixel_tile_avx512
                                  : isa == ISA_AVX2 && g->nib ? pixel_tile_avx2
                                                              : pixel_tile_portable;
    /* Pixel tiles outer, channel tiles inner: each output row is finished while it is in
     * cache and the receptive fields are located (or packed) once per tile; all the weights
     * stay in L2 (<= 300 KB for 512x512x3x3). One thread runs a plain loop (an OpenMP
     * dynamic schedule costs a library call per chunk even then). */
    if (threads <= 1) {
        for (long t = 0; t < ptiles; t++) {
            long p0 = t * rt;
            tile(x, buf, g, ww, m2, k2, out, p0, (int)(P - p0 < rt ? P - p0 : rt), 0, ctiles,
                 isa);
        }
        if (g->stream) _mm_sfence();
        return;
    }
    /* Threads share pixel tiles; on small maps (Face-ResNet's 5x4 has 4 tiles) each channel
     * tile is a task of its own. Dynamic chunks of about 1/8 of a thread's share: on a
     * shared machine a descheduled thread then delays the call by one chunk, not by half. */
    int csplit = ptiles >= 8L * threads ? 1 : ctiles;
    long tasks = ptiles * csplit;
    long chunk = tasks / (8L * threads);
    chunk = chunk < 1 ? 1 : chunk;
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(dynamic, chunk) nowait
        for (long t = 0; t < tasks; t++) {
            long p0 = (t / csplit) * rt;
            int c0 = (int)(t % csplit) * ctiles / csplit;
            int c1 = (int)(t % csplit + 1) * ctiles / csplit;
            tile(x, buf, g, ww, m2, k2, out, p0, (int)(P - p0 < rt ? P - p0 : rt), c0, c1, isa);
        }
        if (g->stream) _mm_sfence();
    }
}

/* Threads worth using: one for calls whose popcount work is too small to share. */
static int useful_threads(const geom_t *g, int threads) {
    long work = (long)g->n * g->oh * g->ow * g->cop * g->kh * g->kw * g->cw;
    return work < MIN_PARALLEL_WORK ? 1 : threads;
}

/* ------------------------------------------------------------------ float activations */
/* Binary weights, float activations: out = scale * sum_k (w_k ? x_k : -x_k) + bias. The
 * weights come as +-1.0 floats wpm[CoP/16][KK*C][16] (kernel.prepare_sign_weights; the file
 * keeps 1 bit per weight): fma(x, +-1, acc) rounds exactly as acc + (+-x), so a fused
 * multiply-add *is* the select-and-add, in one operation where a select from bits takes two
 * (a masked negate, an add) and a select from 16-bit masks took five on AVX2. Every path
 * sums k = 0 .. K-1 in order, in (i, j, c) order, and ends with one fma(scale, acc, bias):
 * the portable, AVX2 and AVX-512 paths agree bit for bit. The 16-channel column panels are
 * contiguous along k: a [KK*C][CoP] panel had the AVX2 tile read one cache line per k with
 * a stride of CoP floats, and 64->64 3x3 convs ran at half the FMA rate. */
#define FCOL 16   /* output channels per weight column panel */
#define FTILE 12  /* output pixels per float tile: two register tiles of 6 */

/* Zero-padded float copy [N, HP, WP, C]. */
static void pad_float(const float *x, const geom_t *g, float *buf, int threads) {
    long rows = (long)g->n * g->hp;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (long r = 0; r < rows; r++) {
        int n = (int)(r / g->hp), y = (int)(r % g->hp) - g->ph;
        float *dst = buf + r * g->wp * g->c;
        memset(dst, 0, sizeof(float) * (size_t)g->wp * g->c);
        if (y < 0 || y >= g->h) continue;
        memcpy(dst + (long)g->pw * g->c, x + ((long)n * g->h + y) * g->w * g->c,
               sizeof(float) * (size_t)g->w * g->c);
    }
}

/* Base pointers of the receptive fields of output pixels p0 .. p0+rows-1 in the padded
 * float input (kh rows of kw*C contiguous floats, wp*C apart). */
static inline void ffield_bases(const float *buf, const geom_t *g, long p0, int rows,
                                const float **bases) {
    long pix[FTILE];
    field_pixels(g, p0, rows, pix);
    for (int r = 0; r < rows; r++) bases[r] = buf + pix[r] * g->c;
}

static inline void fstore(const geom_t *g, float *out, long p, int co, float acc,
                          const float *scale, const float *bias) {
    out[p * g->cout + co] = fmaf(scale[co], acc, bias[co]);
}

static void ftile_portable(const float *const *bases, const geom_t *g, const float *wpm,
                           long p0, int rows, int co0, int co1, const float *scale,
                           const float *bias, float *out) {
    const int span = g->kw * g->c;
    const long kk = (long)g->kh * span;
    for (int r = 0; r < rows; r++)
        for (int co = co0; co < co1 && co < g->cout; co++) {
            float acc = 0.0f;
            for (int i = 0; i < g->kh; i++) {
                const float *a = bases[r] + (long)i * g->wp * g->c;
                const float *w = wpm + ((co / FCOL) * kk + (long)i * span) * FCOL + co % FCOL;
                for (int t = 0; t < span; t++, w += FCOL) acc += *w > 0.0f ? a[t] : -a[t];
            }
            fstore(g, out, p0 + r, co, acc, scale, bias);
        }
}

/* R pixels x 16 channels (two ymm per pixel), k in order: 12 accumulators, 2 weight
 * registers, 1 broadcast. R is a compile-time constant at every call. The accumulators are
 * named variables: as an array, gcc stored all twelve to the stack on every k (half the
 * FMA rate). */
#define FR2 6
#define FACC_DECL(r) __m256 c##r##0 = _mm256_setzero_ps(), c##r##1 = _mm256_setzero_ps();
#define FACC_STEP(r)                                                    \
    if (R > r) {                                                        \
        __m256 v = _mm256_broadcast_ss(a##r + t);                       \
        c##r##0 = _mm256_fmadd_ps(v, w0, c##r##0);                      \
        c##r##1 = _mm256_fmadd_ps(v, w1, c##r##1);                      \
    }
#define FACC_PTR(r) const float *a##r = bases[R > r ? r : 0] + off;
#define FACC_OUT(r) if (R > r) { acc[r][0] = c##r##0; acc[r][1] = c##r##1; }
__attribute__((target("avx2,fma"), always_inline))
static inline void ftile_avx2_rows(const float *const *bases, const geom_t *g, const float *wpm,
                                   long p0, const int R, int co0, const float *scale,
                                   const float *bias, float *out) {
    const int span = g->kw * g->c;
    const float *w = wpm + (co0 / FCOL) * (long)g->kh * span * FCOL;
    FACC_DECL(0) FACC_DECL(1) FACC_DECL(2) FACC_DECL(3) FACC_DECL(4) FACC_DECL(5)
    for (int i = 0; i < g->kh; i++) {
        long off = (long)i * g->wp * g->c;
        FACC_PTR(0) FACC_PTR(1) FACC_PTR(2) FACC_PTR(3) FACC_PTR(4) FACC_PTR(5)
        for (int t = 0; t < span; t++, w += FCOL) {
            __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
            FACC_STEP(0) FACC_STEP(1) FACC_STEP(2) FACC_STEP(3) FACC_STEP(4) FACC_STEP(5)
        }
    }
    __m256 acc[FR2][2];
    FACC_OUT(0) FACC_OUT(1) FACC_OUT(2) FACC_OUT(3) FACC_OUT(4) FACC_OUT(5)
    int valid = g->cout - co0 < 16 ? g->cout - co0 : 16;
    for (int r = 0; r < R; r++) {
        float *o = out + (p0 + r) * g->cout + co0;
        if (valid == 16) {
            _mm256_storeu_ps(o, _mm256_fmadd_ps(_mm256_loadu_ps(scale + co0), acc[r][0],
                                                _mm256_loadu_ps(bias + co0)));
            _mm256_storeu_ps(o + 8, _mm256_fmadd_ps(_mm256_loadu_ps(scale + co0 + 8), acc[r][1],
                                                    _mm256_loadu_ps(bias + co0 + 8)));
            continue;
        }
        float tmp[16];
        _mm256_storeu_ps(tmp, acc[r][0]);
        _mm256_storeu_ps(tmp + 8, acc[r][1]);
        for (int t = 0; t < valid; t++) fstore(g, out, p0 + r, co0 + t, tmp[t], scale, bias);
    }
}

__attribute__((target("avx2,fma")))
static void ftile_avx2(const float *const *bases, const geom_t *g, const float *wpm, long p0,
                       int rows, int co0, int co1, const float *scale, const float *bias,
                       float *out) {
    for (int co = co0; co < co1 && co < g->cout; co += 16)
        for (int r = 0; r < rows; r += FR2) {
            switch (rows - r < FR2 ? rows - r : FR2) {
#define FCASE(n) case n: ftile_avx2_rows(bases + r, g, wpm, p0 + r, n, co, scale, bias, out); break;
                FCASE(1) FCASE(2) FCASE(3) FCASE(4) FCASE(5) FCASE(6)
#undef FCASE
            }
        }
}

#define FR512 6
/* R pixels x 16*NC channels (NC zmm per pixel, NC = 1, 2 or 4): with four, 24
 * accumulators and 4 weight registers (R = 6); layers of 16 or 32 output channels (the
 * first convs of small students) take NC = 1 or 2 and R = 12 rather than computing 64
 * channels to keep 16 (stem 16->16 at 56x56: 0.17 ms, torch 0.09 ms). */
__attribute__((target(AVX512_TARGET), always_inline))
static inline void ftile_avx512_rows(const float *const *bases, const geom_t *g,
                                     const float *wpm, long p0, const int R, const int NC,
                                     int co0, const float *scale, const float *bias,
                                     float *out) {
    const int span = g->kw * g->c;
    const long panel = (long)g->kh * span * FCOL;  /* floats per column panel */
    const float *w = wpm + (co0 / FCOL) * panel;
    __m512 acc[FTILE][4];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < NC; q++) acc[r][q] = _mm512_setzero_ps();
    for (int i = 0; i < g->kh; i++) {
        long off = (long)i * g->wp * g->c;
        const float *a[FTILE];
        for (int r = 0; r < R; r++) a[r] = bases[r] + off;
        for (int t = 0; t < span; t++, w += FCOL) {
            __m512 wv[4];
            for (int q = 0; q < NC; q++) wv[q] = _mm512_loadu_ps(w + q * panel);
            for (int r = 0; r < R; r++) {
                __m512 v = _mm512_set1_ps(a[r][t]);
                for (int q = 0; q < NC; q++) acc[r][q] = _mm512_fmadd_ps(v, wv[q], acc[r][q]);
            }
        }
    }
    int valid = g->cout - co0 < 16 * NC ? g->cout - co0 : 16 * NC;
    for (int r = 0; r < R; r++) {
        float *o = out + (p0 + r) * g->cout + co0;
        for (int q = 0; q < NC; q++) {
            int left = valid - 16 * q;
            if (left <= 0) break;
            __mmask16 m = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
            __m512 y = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, scale + co0 + 16 * q), acc[r][q],
                                       _mm512_maskz_loadu_ps(m, bias + co0 + 16 * q));
            _mm512_mask_storeu_ps(o + 16 * q, m, y);
        }
    }
}

/* All rows (up to FTILE) of a tile as one register tile of NC zmm per pixel. */
#define FTILE_SWITCH(NC)                                                                  \
    switch (rows) {                                                                       \
        FNC(1, NC) FNC(2, NC) FNC(3, NC) FNC(4, NC) FNC(5, NC) FNC(6, NC)                  \
        FNC(7, NC) FNC(8, NC) FNC(9, NC) FNC(10, NC) FNC(11, NC) FNC(12, NC)               \
    }
#define FNC(n, NC) case n: ftile_avx512_rows(bases, g, wpm, p0, n, NC, co, scale, bias, out); break;

__attribute__((target(AVX512_TARGET)))
static void ftile_avx512(const float *const *bases, const geom_t *g, const float *wpm,
                         long p0, int rows, int co0, int co1, const float *scale,
                         const float *bias, float *out) {
    for (int co = co0; co < co1 && co < g->cout; co += 64) {
        int left = g->cout - co;
        if (left <= 16) {
            FTILE_SWITCH(1)
            continue;
        }
        /* 2 zmm x 12 rows spilled accumulators to the stack: 6 rows a tile, as for 4 */
        for (int r = 0; r < rows; r += FR512) {
            int n = rows - r < FR512 ? rows - r : FR512;
            if (left <= 32) {
                switch (n) {
#define FCASE(n) case n: ftile_avx512_rows(bases + r, g, wpm, p0 + r, n, 2, co, scale, bias, out); break;
                    FCASE(1) FCASE(2) FCASE(3) FCASE(4) FCASE(5) FCASE(6)
#undef FCASE
                }
                continue;
            }
            switch (n) {
#define FCASE(n) case n: ftile_avx512_rows(bases + r, g, wpm, p0 + r, n, 4, co, scale, bias, out); break;
                FCASE(1) FCASE(2) FCASE(3) FCASE(4) FCASE(5) FCASE(6)
#undef FCASE
            }
        }
    }
}
#undef FNC
#undef FTILE_SWITCH

/* Pixel tiles of FTILE output pixels, each across all channels (its fields stay in L1 while
 * the weight panel streams from L2); threads share pixel tiles, or on maps with few of them
 * (7x7 at batch 1) channel tiles too. */
static void fgemm(const float *buf, const geom_t *g, const float *wpm, const float *scale,
                  const float *bias, float *out, int threads) {
    long P = (long)g->n * g->oh * g->ow;
    long ptiles = (P + FTILE - 1) / FTILE;
    int ctiles = g->cop / CO_TILE;
    int isa = g_isa;
    void (*tile)(const float *const *, const geom_t *, const float *, long, int, int, int,
                 const float *, const float *, float *) =
        isa == ISA_AVX512 ? ftile_avx512 : isa == ISA_AVX2 ? ftile_avx2 : ftile_portable;
    int csplit = ptiles >= 8L * threads ? 1 : ctiles;
    long tasks = ptiles * csplit;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
    for (long t = 0; t < tasks; t++) {
        long p0 = (t / csplit) * FTILE;
        int rows = (int)(P - p0 < FTILE ? P - p0 : FTILE);
        int c0 = (int)(t % csplit) * ctiles / csplit * CO_TILE;
        int c1 = (int)(t % csplit + 1) * ctiles / csplit * CO_TILE;
        const float *bases[FTILE];
        ffield_bases(buf, g, p0, rows, bases);
        tile(bases, g, wpm, p0, rows, c0, c1, scale, bias, out);
    }
}

/* Threads worth using for a float-activation call (multiply-adds, as for the XNOR path's
 * bit operations but 32 times fewer per unit of work). */
static int useful_fthreads(const geom_t *g, int threads) {
    long work = (long)g->n * g->oh * g->ow * g->cop * g->kh * g->kw * g->c;
    return work < MIN_PARALLEL_WORK / 4 ? 1 : threads;
}

/* ------------------------------------------------------------------ Python glue */
static int is_float_format(const Py_buffer *view) {
    const char *fmt = view->format ? view->format : "B";
    if (*fmt == '<' || *fmt == '=' || *fmt == '@') fmt++;
    return fmt[0] == 'f' || fmt[0] == 'd' || fmt[0] == 'e';
}

/* A C-contiguous buffer of itemsize-byte items: floats when is_float is 1 (an int32 array
 * of the same size must not be read as floats), integers when 0, either when -1. */
static int get_buf(PyObject *obj, Py_buffer *view, int writable, const char *name,
                   Py_ssize_t itemsize, int is_float) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    int got_float = is_float_format(view);
    if (view->itemsize != itemsize || (is_float >= 0 && got_float != is_float)) {
        PyErr_Format(PyExc_TypeError, "%s: expected %s items of %zd bytes, got format '%s'",
                     name, is_float ? "float32" : "integer", itemsize, view->format);
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
    g->c = (int)x->shape[3]; g->cw = (g->c + 31) / 32;
    g->kh = kh; g->kw = kw; g->sh = sh; g->sw = sw; g->ph = ph; g->pw = pw;
    g->hp = g->h + 2 * ph; g->wp = g->w + 2 * pw;
    g->oh = (g->hp - kh) / sh + 1; g->ow = (g->wp - kw) / sw + 1;
    g->cout = cout; g->cop = (cout + CO_TILE - 1) / CO_TILE * CO_TILE;
    g->sign_out = 0; g->cwo = 0; g->stream = 0; g->nib = NULL;
    if (g->oh <= 0 || g->ow <= 0 || sh <= 0 || sw <= 0) {
        PyErr_SetString(PyExc_ValueError, "empty output: kernel larger than padded input");
        return -1;
    }
    return 0;
}

/* The XNOR-popcount conv on acquired buffers: x float32 NHWC activations or uint32 sign
 * words [N, H, W, ceil(cin/32)] (the output of a layer run with sign words out); out float32
 * [N, OH, OW, cout] or uint32 sign words [N, OH, OW, ceil(cout/32)]. Checks every size
 * against the geometry; 0 on success, -1 with an exception set. */
static int bconv_run(Py_buffer *x, Py_buffer *out, const Py_buffer *w, const Py_buffer *aff,
                     int cin, int cout, int kh, int kw, int sh, int sw, int ph, int pw,
                     int threads, const uint8_t *nib) {
    geom_t g;
    int x_words = !is_float_format(x);
    if (fill_geom(&g, x, cout, kh, kw, sh, sw, ph, pw) < 0) return -1;
    if (x_words) {  /* the last axis holds words: the channel count comes from cin */
        g.c = cin; g.cw = (cin + 31) / 32;
    }
    g.sign_out = !is_float_format(out);
    g.cwo = (cout + 31) / 32;
    if (g.c != cin || (x_words && x->shape[3] != g.cw) ||
        w->len != (Py_ssize_t)kh * kw * g.cw * g.cop * 4 || aff->len != (Py_ssize_t)g.cop * 8 ||
        out->len != (Py_ssize_t)g.n * g.oh * g.ow * (g.sign_out ? g.cwo : cout) * 4) {
        PyErr_SetString(PyExc_ValueError, "bconv: buffer sizes do not match the geometry");
        return -1;
    }
    threads = useful_threads(&g, threads < 1 ? 1 : threads);
    if (g_isa == ISA_AVX2 && nib_fits(&g)) g.nib = nib;
    g.stream = !g.sign_out && (g_isa == ISA_AVX512 || g.nib) && cout % 16 == 0 &&
               ((uintptr_t)out->buf & 63) == 0 && (size_t)out->len >= STREAM_MIN_BYTES;
    /* Packed input without padding is already the layout the tiles read. */
    int in_place = x_words && ph == 0 && pw == 0;
    int direct = !x_words && packs_in_tile(&g) && g.cw <= 64;
    size_t nbuf = (size_t)g.n * g.hp * g.wp * g.cw;
    uint32_t *buf = (in_place || direct) ? NULL
                    : (uint32_t *)aligned_alloc(64, (nbuf * 4 + 63) / 64 * 64);
    if (!in_place && !direct && !buf) { PyErr_NoMemory(); return -1; }
    const float *m2 = (const float *)aff->buf;
    Py_BEGIN_ALLOW_THREADS
    if (buf) pack_padded(x_words ? NULL : (const float *)x->buf,
                         x_words ? (const uint32_t *)x->buf : NULL, &g, buf, threads);
    bgemm((const float *)x->buf, in_place ? (const uint32_t *)x->buf : buf, &g,
          (const uint32_t *)w->buf, m2, m2 + g.cop, out->buf, threads);
    Py_END_ALLOW_THREADS
    free(buf);
    return 0;
}

/* Plan(wwords, affine, cin, cout, kh, kw, sh, sw, ph, pw, threads): a layer's weights and
 * affine acquired once. On MobileFaceNet's 7x7 and 1x1 maps the conv takes a few
 * microseconds or less, and the per-call overhead (acquiring four buffers, parsing nine ints,
 * validating in Python, allocating the output) had been 1-2 us of it.
 *   expect(shape, words_in, out_shape, alloc, dtype): the fast path of call() for inputs of
 *       this shape (kernel.BinaryConvPlan validated it); alloc(out_shape, dtype) makes an
 *       output.
 *   call(x): the output for x, or None when x is not what expect() described (the caller
 *       then validates). The previous output is reused when nothing but the plan holds it:
 *       not it, and not the buffer it is a view of (slices of a view reference the buffer). */
typedef struct {
    PyObject_HEAD
    Py_buffer w, aff;
    uint8_t *nib;  /* the weights in the AVX2 layout, made on first use of that path */
    int p[9];  /* cin, cout, kh, kw, sh, sw, ph, pw, threads */
    int ready;
    Py_ssize_t in_shape[4];
    int in_words;
    PyObject *out_shape, *alloc, *dtype;  /* for call(); alloc is NULL until expect() */
    PyObject *last, *last_base;   /* the previous output of call() and the array it views */
} PlanObject;

static int plan_init(PlanObject *self, PyObject *args, PyObject *kwds) {
    PyObject *ow, *oaff;
    int *p = self->p;
    if (self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Plan is already initialised");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "OOiiiiiiiii", &ow, &oaff, &p[0], &p[1], &p[2], &p[3], &p[4],
                          &p[5], &p[6], &p[7], &p[8]))
        return -1;
    if (get_buf(ow, &self->w, 0, "wwords", 4, 0) < 0) return -1;
    if (get_buf(oaff, &self->aff, 0, "affine", 4, 1) < 0) {
        PyBuffer_Release(&self->w);
        return -1;
    }
    self->ready = 1;
    return 0;
}

static void plan_forget_output(PlanObject *self) {
    Py_CLEAR(self->last);
    Py_CLEAR(self->last_base);
}

static void plan_dealloc(PlanObject *self) {
    if (self->ready) {
        PyBuffer_Release(&self->w);
        PyBuffer_Release(&self->aff);
    }
    plan_forget_output(self);
    free(self->nib);
    self->nib = NULL;
    Py_CLEAR(self->out_shape);
    Py_CLEAR(self->alloc);
    Py_CLEAR(self->dtype);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int plan_conv(PlanObject *self, Py_buffer *x, Py_buffer *out) {
    const int *p = self->p;
    if (g_isa == ISA_AVX2 && !self->nib) {
        long kwords = (long)p[2] * p[3] * ((p[0] + 31) / 32);
        self->nib = nib_weights((const uint32_t *)self->w.buf, kwords,
                                (p[1] + CO_TILE - 1) / CO_TILE * CO_TILE);
        if (!self->nib) { PyErr_NoMemory(); return -1; }
    }
    return bconv_run(x, out, &self->w, &self->aff, p[0], p[1], p[2], p[3], p[4], p[5], p[6],
                     p[7], p[8], self->nib);
}

static PyObject *plan_expect(PlanObject *self, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *shape;
    if (nargs != 5 || !PyTuple_Check(args[0]) || PyTuple_GET_SIZE(args[0]) != 4 ||
        !PyTuple_Check(args[2]) || !PyCallable_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "Plan.expect(shape, words_in, out_shape, alloc, dtype)");
        return NULL;
    }
    shape = args[0];
    for (int i = 0; i < 4; i++) {
        self->in_shape[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(shape, i));
        if (self->in_shape[i] == -1 && PyErr_Occurred()) return NULL;
    }
    int words = PyObject_IsTrue(args[1]);
    if (words < 0) return NULL;
    self->in_words = words;
    Py_INCREF(args[2]); Py_XSETREF(self->out_shape, args[2]);
    Py_INCREF(args[3]); Py_XSETREF(self->alloc, args[3]);
    Py_INCREF(args[4]); Py_XSETREF(self->dtype, args[4]);
    plan_forget_output(self);
    Py_RETURN_NONE;
}

/* The previous output when only the plan holds it (and it is still writable: its last
 * holder may have made it read-only), else a new one from alloc; view gets its buffer.
 * Returns a new reference, or NULL with an exception set. */
static PyObject *plan_output(PlanObject *self, Py_buffer *view) {
    if (self->last && Py_REFCNT(self->last) == 1 &&
        (!self->last_base || Py_REFCNT(self->last_base) == 2)) {
        if (get_buf(self->last, view, 1, "out", 4, -1) == 0) {
            Py_INCREF(self->last);
            return self->last;
        }
        PyErr_Clear();
    }
    PyObject *alloc_args[2] = {self->out_shape, self->dtype};
    PyObject *out = PyObject_Vectorcall(self->alloc, alloc_args, 2, NULL);
    if (!out) return NULL;
    PyObject *base = PyObject_GetAttrString(out, "base");
    if (!base || get_buf(out, view, 1, "out", 4, -1) < 0) {
        Py_XDECREF(base);
        Py_DECREF(out);
        return NULL;
    }
    plan_forget_output(self);
    self->last = out; Py_INCREF(out);
    if (base != Py_None) self->last_base = base;
    else Py_DECREF(base);
    return out;
}

static PyObject *plan_call(PlanObject *self, PyObject *x_obj) {
    Py_buffer x, out;
    if (!self->alloc) Py_RETURN_NONE;  /* nothing expected yet */
    if (PyObject_GetBuffer(x_obj, &x, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    int fits = x.ndim == 4 && x.itemsize == 4 && is_float_format(&x) == !self->in_words;
    for (int i = 0; fits && i < 4; i++) fits = x.shape[i] == self->in_shape[i];
    if (!fits) { PyBuffer_Release(&x); Py_RETURN_NONE; }
    PyObject *res = plan_output(self, &out);
    if (!res) { PyBuffer_Release(&x); return NULL; }
    int rc = plan_conv(self, &x, &out);
    PyBuffer_Release(&x); PyBuffer_Release(&out);
    if (rc < 0) { Py_DECREF(res); return NULL; }
    return res;
}

static PyMethodDef plan_methods[] = {
    {"expect", (PyCFunction)(void (*)(void))plan_expect, METH_FASTCALL,
     "expect(shape, words_in, out_shape, alloc, dtype): the input call() serves"},
    {"call", (PyCFunction)plan_call, METH_O, "call(x): a new (or recycled) output, or None"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject PlanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "slimface.runtime._kernel.Plan",
    .tp_basicsize = sizeof(PlanObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Plan(wwords, affine, cin, cout, kh, kw, sh, sw, ph, pw, threads): an XNOR conv "
              "with its weights acquired once",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)plan_init,
    .tp_dealloc = (destructor)plan_dealloc,
    .tp_methods = plan_methods,
};

static PyObject *py_fconv(PyObject *self, PyObject *args) {
    PyObject *ox, *ow, *os, *ob, *oout;
    int kh, kw, sh, sw, ph, pw, threads;
    if (!PyArg_ParseTuple(args, "OOOOOiiiiiii", &ox, &ow, &os, &ob, &oout, &kh, &kw, &sh, &sw,
                          &ph, &pw, &threads))
        return NULL;
    Py_buffer x, w, s, b, out;
    if (get_buf(ox, &x, 0, "x", 4, 1) < 0) return NULL;
    if (get_buf(ow, &w, 0, "wpm", 4, 1) < 0) { PyBuffer_Release(&x); return NULL; }
    if (get_buf(os, &s, 0, "scale", 4, 1) < 0) { PyBuffer_Release(&x); PyBuffer_Release(&w); return NULL; }
    if (get_buf(ob, &b, 0, "bias", 4, 1) < 0) {
        PyBuffer_Release(&x); PyBuffer_Release(&w); PyBuffer_Release(&s); return NULL;
    }
    if (get_buf(oout, &out, 1, "out", 4, 1) < 0) {
        PyBuffer_Release(&x); PyBuffer_Release(&w); PyBuffer_Release(&s); PyBuffer_Release(&b);
        return NULL;
    }
    geom_t g;
    PyObject *ret = NULL;
    int cout = (int)(s.len / 4);
    if (fill_geom(&g, &x, cout, kh, kw, sh, sw, ph, pw) < 0) goto done;
    if (w.len != (Py_ssize_t)kh * kw * g.c * g.cop * 4 || b.len != s.len ||
        out.len != (Py_ssize_t)g.n * g.oh * g.ow * cout * 4) {
        PyErr_SetString(PyExc_ValueError, "fconv: buffer sizes do not match the geometry");
        goto done;
    }
    threads = useful_fthreads(&g, threads < 1 ? 1 : threads);
    {
        /* Without padding the input is already the grid the tiles read. */
        int padded = ph || pw;
        size_t nbuf = (size_t)g.n * g.hp * g.wp * g.c;
        float *buf = padded ? (float *)aligned_alloc(64, (nbuf * 4 + 63) / 64 * 64) : NULL;
        if (padded && !buf) { PyErr_NoMemory(); goto done; }
        Py_BEGIN_ALLOW_THREADS
        if (buf) pad_float((const float *)x.buf, &g, buf, threads);
        fgemm(buf ? buf : (const float *)x.buf, &g, (const float *)w.buf, (const float *)s.buf,
              (const float *)b.buf, (float *)out.buf, threads);
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
    if (get_buf(ox, &x, 0, "x", 4, 1) < 0) return NULL;
    if (get_buf(oout, &out, 1, "out", 4, 0) < 0) { PyBuffer_Release(&x); return NULL; }
    geom_t g;
    PyObject *ret = NULL;
    if (fill_geom(&g, &x, 1, 1, 1, 1, 1, 0, 0) < 0) goto done;
    if (out.len != (Py_ssize_t)g.n * g.h * g.w * g.cw * 4) {
        PyErr_SetString(PyExc_ValueError, "pack_nhwc: out has the wrong size");
        goto done;
    }
    if (threads < 1) threads = 1;
    Py_BEGIN_ALLOW_THREADS
    pack_padded((const float *)x.buf, NULL, &g, (uint32_t *)out.buf, threads);
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

/* Writes a float buffer the way the kernel writes a streamed output (non-temporal stores, same
 * threads): `slimface bench kernels` times it as the floor under any float-output conv of
 * that size, since the output has to reach memory whatever computes it. The values vary:
 * zeros streamed about three times faster on this VM (0.29 against 0.89 ms for 24 MB, one
 * thread), which no conv output would. The portable path does not stream, and neither
 * does this. */
__attribute__((target("avx512f")))
static void stream_fill_avx512(float *o, size_t n, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (size_t i = 0; i < n / 16; i++) _mm512_stream_ps(o + 16 * i, _mm512_set1_ps((float)i));
    _mm_sfence();
    for (size_t i = n / 16 * 16; i < n; i++) o[i] = 0.0f;
}

__attribute__((target("avx2")))
static void stream_fill_avx2(float *o, size_t n, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (size_t i = 0; i < n / 8; i++) _mm256_stream_ps(o + 8 * i, _mm256_set1_ps((float)(i / 2)));
    _mm_sfence();
    for (size_t i = n / 8 * 8; i < n; i++) o[i] = 0.0f;
}

static PyObject *py_stream_fill(PyObject *self, PyObject *args) {
    PyObject *obj;
    Py_buffer out;
    int threads;
    if (!PyArg_ParseTuple(args, "Oi", &obj, &threads)) return NULL;
    if (get_buf(obj, &out, 1, "stream_fill", 4, 1) < 0) return NULL;
    if (((uintptr_t)out.buf & 63) != 0) {
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "stream_fill: out must start on a cache line");
        return NULL;
    }
    size_t n = (size_t)out.len / 4;
    if (threads < 1) threads = 1;
    Py_BEGIN_ALLOW_THREADS
    if (g_isa == ISA_AVX512) stream_fill_avx512((float *)out.buf, n, threads);
    else if (g_isa == ISA_AVX2) stream_fill_avx2((float *)out.buf, n, threads);
    else
        for (size_t i = 0; i < n; i++) ((float *)out.buf)[i] = (float)(i / 16);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static PyObject *py_max_threads(PyObject *self, PyObject *noargs) {
#ifdef _OPENMP
    return PyLong_FromLong(omp_get_num_procs());
#else
    return PyLong_FromLong(1);
#endif
}

static PyMethodDef methods[] = {
    {"fconv", py_fconv, METH_VARARGS, "float-activation binary-weight conv (sign-select-add)"},
    {"pack_nhwc", py_pack_nhwc, METH_VARARGS, "pack signs of NHWC floats into uint32 words"},
    {"isa", py_isa, METH_NOARGS, "instruction set in use"},
    {"best_isa", py_best_isa, METH_NOARGS, "best instruction set this CPU supports"},
    {"set_isa", py_set_isa, METH_VARARGS, "force an instruction set (portable/avx2/avx512)"},
    {"stream_fill", py_stream_fill, METH_VARARGS, "write a float32 buffer as streamed outputs are written"},
    {"max_threads", py_max_threads, METH_NOARGS, "processors OpenMP sees"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel",
                                    "slimface binary-layer CPU kernels", -1, methods};

PyMODINIT_FUNC PyInit__kernel(void) {
    __builtin_cpu_init();
    init_nib_tab();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512vpopcntdq"))
        g_best_isa = ISA_AVX512;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        g_best_isa = ISA_AVX2;
    g_isa = g_best_isa;
    if (PyType_Ready(&PlanType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&PlanType);
    if (PyModule_AddObject(m, "Plan", (PyObject *)&PlanType) < 0) {
        Py_DECREF(&PlanType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
