"""The C source of graphnn's float32 GEMM, included in every translation unit that needs one.

C = A B for strided A (M x K) and B (K x N) into a row-major C, blocked the way BLIS does it:
panels of B (KC x NC) are packed into contiguous slivers of NR columns, and a register-blocked
micro-kernel accumulates an MR x NR tile of C in vector registers (16 of them for 8 x 32 floats
on AVX-512) from a sliver of B and MR rows of A: read in place when A is row-major (its rows are
contiguous along k already), else packed too. It is written with GCC/Clang vector extensions, so
the compiler emits the target's widest FMA instructions with ``-march=native`` and plain SSE
without. Products with few rows whose operands both run along k (a Linear layer's forward at a
small batch) skip packing altogether: dot-product tiles (AVX-512 targets).
Rows or columns of C are split across OpenMP threads when the product is large enough to pay for
them. A fused matmul passes its epilogue as a callback, run on each block of C as soon as the
block's sums are final, by the thread that computed it.
"""

MR, NR = 8, 32
KC, MC, NC = 256, 96, 512
DOT_M, DOT_K, DOT_LONG_K, DOT_N = 16, 64, 256, 1024

def _transpose16() -> str:
    """C for graphnn_transpose16; the shuffles' lane indices must be constants, so they are written out."""
    lines = ["/* A 16 x 16 transpose in registers: four stages, each swapping the off-diagonal d x d blocks",
             " * of every 2d x 2d block with two-input shuffles. */",
             "static inline void graphnn_transpose16(graphnn_v16 r[16]) {"]
    for d in (8, 4, 2, 1):
        lo = [lane if not lane & d else 16 + lane - d for lane in range(16)]
        hi = [lane + d if not lane & d else 16 + lane for lane in range(16)]
        lines += ["    for (int i = 0; i < 16; ++i) {",
                  f"        if (i & {d}) continue;",
                  f"        const graphnn_v16 x = r[i], y = r[i + {d}];",
                  f"        r[i] = __builtin_shufflevector(x, y, {', '.join(map(str, lo))});",
                  f"        r[i + {d}] = __builtin_shufflevector(x, y, {', '.join(map(str, hi))});",
                  "    }"]
    return "\n".join(lines + ["}"])


def _sums16() -> tuple[str, list[int]]:
    """C for graphnn_sums16, and the lane of its result that holds each input vector's sum.

    Four stages halve the width of the partial sums: each adds, for two vectors, their segments'
    first halves (gathered by one shuffle) to their second halves (another), so 16 vectors become
    8 whose segments of 8 lanes are partial sums of one input each, then 4, 2 and 1."""
    vectors = [[q] for q in range(16)]  # the input each segment of each vector belongs to
    lines = ["/* Sixteen horizontal sums at once: lane graphnn_sum_lane[q] of the result is the sum of v[q]'s",
             " * lanes (30 two-input shuffles and 15 additions; codegen/c_gemm.py: _sums16). */",
             "static inline graphnn_v16 graphnn_sums16(graphnn_v16 v[16]) {"]
    count, width = 16, 8
    while width >= 1:
        segments = 16 // (2 * width)
        low = [src + s * 2 * width + t for s in range(segments) for src in (0, 16) for t in range(width)]
        high = [i + width for i in low]
        if count > 2:
            lines += [f"    for (int p = 0; p < {count // 2}; ++p)",
                      f"        v[p] = __builtin_shufflevector(v[2 * p], v[2 * p + 1], {', '.join(map(str, low))})",
                      f"             + __builtin_shufflevector(v[2 * p], v[2 * p + 1], {', '.join(map(str, high))});"]
        else:  # the last stage: one pair
            lines += [f"    v[0] = __builtin_shufflevector(v[0], v[1], {', '.join(map(str, low))})",
                      f"         + __builtin_shufflevector(v[0], v[1], {', '.join(map(str, high))});"]
        vectors = [[owner for s in range(segments) for owner in (vectors[2 * p][s], vectors[2 * p + 1][s])]
                   for p in range(count // 2)]
        count, width = count // 2, width // 2
    lanes = [vectors[0].index(q) for q in range(16)]
    lines += ["    return v[0];", "}", f"static const int graphnn_sum_lane[16] = {{{', '.join(map(str, lanes))}}};"]
    return "\n".join(lines), lanes


GEMM = r"""
/* ---- graphnn_sgemm: C[M,N] = A[M,K] B[K,N], strided A and B, row-major C (ldc) ---------- */
#include <stdlib.h>
#define GEMM_MR %(MR)d
#define GEMM_NR %(NR)d
#define GEMM_KC %(KC)d
#define GEMM_MC %(MC)d
#define GEMM_NC %(NC)d
#define GEMM_SPLIT 16  /* threads split rows or columns in blocks of this many */
/* Dot-product tiles, unpacked, for products of few rows whose operands are both contiguous along
 * k (a Linear layer's forward at a small batch): with up to 4 rows, or under 32 columns (a
 * packed sliver would be mostly padding), or up to GEMM_DOT_M rows summing at least
 * GEMM_DOT_LONG_K products. Measured on one Zen 5 core: at 8-32 rows and k = 64-128 the packed
 * micro-kernel is 1.2-3x faster (an LSTM's recurrent 32x128 by 128x512 product: 21 against 40
 * µs), at 8-16 rows and k >= 256 the dot tiles are up to 1.6x faster, at 32 rows only where
 * the columns are few. */
#ifndef GEMM_DOT_M
#define GEMM_DOT_M %(DOT_M)d
#endif
#ifndef GEMM_DOT_LONG_K
#define GEMM_DOT_LONG_K %(DOT_LONG_K)d
#endif
#ifndef GEMM_DOT_K  /* ...and never when they sum fewer products than this (shorter ones are mostly
                     * the zero-padded tail of each dot product: a first convolution's 9 or 25)... */
#define GEMM_DOT_K %(DOT_K)d
#endif
#ifndef GEMM_DOT_N  /* ...into at most this many columns (beyond, packing B once per GEMM_MR rows
                     * pays: a channels-first convolution's N*Ho*Wo positions) */
#define GEMM_DOT_N %(DOT_N)d
#endif
typedef float graphnn_v16 __attribute__((vector_size(64), aligned(64)));

#ifdef _OPENMP
#include <omp.h>
#endif
#define GRAPHNN_MAX_THREADS 64

/* Growable scratch areas (per thread: packed panels; the product before its epilogue), allocated
 * once and reused, never per call. Calls into one library must not overlap (one program runs
 * on one Python thread at a time). */
static float* graphnn_scratch(int which, int thread, size_t floats) {
    static float* areas[3][GRAPHNN_MAX_THREADS];
    static size_t sizes[3][GRAPHNN_MAX_THREADS];
    if (sizes[which][thread] < floats) {
        free(areas[which][thread]);
        areas[which][thread] = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
        sizes[which][thread] = floats;
    }
    return areas[which][thread];
}

static float* graphnn_scratch_area(int which, size_t floats) {
    return graphnn_scratch(which, 0, floats);
}

typedef float graphnn_v16u __attribute__((vector_size(64), aligned(4)));  /* for unaligned access */

/* The register transpose needs 512-bit vectors and __builtin_shufflevector (GCC 12+, Clang). */
#if defined(__AVX512F__) && (defined(__clang__) || __GNUC__ >= 12)
#define GRAPHNN_TRANSPOSE16 1
/* The first ``lanes`` floats at p, zeros after them, reading nothing past them (AVX-512's masked
 * load; the builtin rather than <immintrin.h>, whose parsing costs each unit a tenth of a second) */
static inline graphnn_v16 graphnn_load_first(const float* p, int64_t lanes) {
    return (graphnn_v16)__builtin_ia32_loadups512_mask(p, (graphnn_v16){0},
                                                       (unsigned short)(lanes <= 0 ? 0 : lanes >= 16 ? 0xffff : (1u << lanes) - 1));
}
%(TRANSPOSE16)s
#endif

/* Pack rows [m0, m0+mc) x cols [k0, k0+kc) of A into slivers of GEMM_MR rows, k-major (zeros past
 * mc). A row-major A is read in place by the micro-kernel; only its edge rows come here. */
static void graphnn_pack_a(const float* a, int64_t sam, int64_t sak, int64_t m0, int64_t mc,
                           int64_t k0, int64_t kc, float* restrict out) {
    for (int64_t i = 0; i < mc; i += GEMM_MR) {
        if (sam == 1 && i + GEMM_MR <= mc) {  /* column-major A: each k's GEMM_MR rows are contiguous */
            const float* column = a + (m0 + i) + k0 * sak;
            for (int64_t k = 0; k < kc; ++k) {
                for (int64_t r = 0; r < GEMM_MR; ++r) out[r] = column[r];
                column += sak;
                out += GEMM_MR;
            }
            continue;
        }
        for (int64_t k = 0; k < kc; ++k) {
            for (int64_t r = 0; r < GEMM_MR; ++r) {
                out[r] = (i + r < mc) ? a[(m0 + i + r) * sam + (k0 + k) * sak] : 0.0f;
            }
            out += GEMM_MR;
        }
    }
}

/* One sliver of a B stored transposed (``cols`` contiguous columns of length kc, ``sbn`` apart;
 * zeros past ``cols``): 16 x 16 blocks transposed in registers where the target has 512-bit
 * vectors (four times faster than element by element; the last kc %% 16 rows by masked loads, so
 * a convolution's short columns of 9 or 25 take the same path), the edges element by element. */
static void graphnn_pack_b_columns(const float* b, int64_t sbn, int64_t kc, int64_t cols, float* restrict out) {
    for (int64_t h = 0; h < GEMM_NR; h += 16) {
        int64_t kb = 0;
#ifdef GRAPHNN_TRANSPOSE16
        if (cols - h >= 16) {
            for (; kb < kc; kb += 16) {
                const int64_t rows = kc - kb < 16 ? kc - kb : 16;
                graphnn_v16 r[16];
                for (int c = 0; c < 16; ++c) r[c] = graphnn_load_first(b + (h + c) * sbn + kb, rows);
                graphnn_transpose16(r);
                for (int64_t l = 0; l < rows; ++l) *(graphnn_v16*)(out + (kb + l) * GEMM_NR + h) = r[l];
            }
        }
#endif
        for (int64_t c = h; c < h + 16; ++c) {
            const float* column = b + c * sbn;
            if (c < cols) {
                for (int64_t k = kb; k < kc; ++k) out[k * GEMM_NR + c] = column[k];
            } else {
                for (int64_t k = kb; k < kc; ++k) out[k * GEMM_NR + c] = 0.0f;
            }
        }
    }
}

/* Pack rows [k0, k0+kc) x cols [0, n) of B into slivers of GEMM_NR columns, k-major. */
static void graphnn_pack_b(const float* b, int64_t sbk, int64_t sbn, int64_t k0, int64_t kc,
                           int64_t n, float* restrict out) {
    for (int64_t j = 0; j < n; j += GEMM_NR) {
        const int64_t nr = n - j < GEMM_NR ? n - j : GEMM_NR;
        if (sbk == 1 && sbn != 1) {  /* B stored transposed: its columns are contiguous */
            graphnn_pack_b_columns(b + k0 + j * sbn, sbn, kc, n - j, out);
            out += kc * GEMM_NR;
            continue;
        }
        if (sbn == 1 && nr == GEMM_NR) {  /* row-major B, a whole sliver: two vector copies per k */
            const float* row = b + k0 * sbk + j;
            for (int64_t k = 0; k < kc; ++k, row += sbk, out += GEMM_NR) {
                for (int v = 0; v < GEMM_NR / 16; ++v) ((graphnn_v16*)out)[v] = ((const graphnn_v16u*)row)[v];
            }
            continue;
        }
#ifdef GRAPHNN_TRANSPOSE16
        if (sbn == 1) {  /* row-major B, the last sliver: masked vector copies (zeros past nr) */
            const float* row = b + k0 * sbk + j;
            for (int64_t k = 0; k < kc; ++k, row += sbk, out += GEMM_NR) {
                ((graphnn_v16*)out)[0] = graphnn_load_first(row, nr);
                ((graphnn_v16*)out)[1] = graphnn_load_first(row + 16, nr - 16);
            }
            continue;
        }
#endif
        for (int64_t k = 0; k < kc; ++k) {
            const float* row = b + (k0 + k) * sbk + j * sbn;
            int64_t c = 0;
            if (sbn == 1) {
                for (; c < nr; ++c) out[c] = row[c];
            } else {
                for (; c < nr; ++c) out[c] = row[c * sbn];
            }
            for (; c < GEMM_NR; ++c) out[c] = 0.0f;
            out += GEMM_NR;
        }
    }
}

/* The micro-kernel: an GEMM_MR x (16 * V) tile of C (+)= packed A sliver x packed B sliver, for
 * V = 2 (a whole sliver) or V = 1 (a sliver's first 16 columns: the edge of an N that is not a
 * multiple of GEMM_NR, where the second half would multiply packed zeros). */
static inline __attribute__((always_inline)) void graphnn_micro_v(
        int V, int64_t kc, const float* restrict ap, int64_t sar, int64_t sak, const float* restrict bp, float* c,
        int64_t ldc, int64_t mr, int64_t nr, int accumulate) {
    graphnn_v16 acc[GEMM_MR][GEMM_NR / 16];
    for (int r = 0; r < GEMM_MR; ++r)
        for (int v = 0; v < V; ++v) acc[r][v] = (graphnn_v16){0};
    for (int64_t k = 0; k < kc; ++k) {
        const graphnn_v16* b = (const graphnn_v16*)(bp + k * GEMM_NR);
        for (int r = 0; r < GEMM_MR; ++r) {
            const float a = ap[k * sak + r * sar];
            for (int v = 0; v < V; ++v) acc[r][v] += a * b[v];
        }
    }
    if (mr == GEMM_MR && nr == 16 * V) {  /* a whole tile: straight from the registers */
        for (int r = 0; r < GEMM_MR; ++r) {
            graphnn_v16u* row = (graphnn_v16u*)(c + r * ldc);
            for (int v = 0; v < V; ++v) row[v] = accumulate ? row[v] + acc[r][v] : acc[r][v];
        }
        return;
    }
    float tile[GEMM_MR][GEMM_NR] __attribute__((aligned(64)));
    for (int r = 0; r < GEMM_MR; ++r)
        for (int v = 0; v < V; ++v) *(graphnn_v16*)&tile[r][16 * v] = acc[r][v];
    for (int64_t r = 0; r < mr; ++r) {
        float* row = c + r * ldc;
        if (accumulate) {
            for (int64_t j = 0; j < nr; ++j) row[j] += tile[r][j];
        } else {
            for (int64_t j = 0; j < nr; ++j) row[j] = tile[r][j];
        }
    }
}

static void graphnn_micro(int64_t kc, const float* restrict ap, const float* restrict bp, float* c, int64_t ldc,
                          int64_t mr, int64_t nr, int accumulate) {
    if (nr > 16) graphnn_micro_v(2, kc, ap, 1, GEMM_MR, bp, c, ldc, mr, nr, accumulate);
    else graphnn_micro_v(1, kc, ap, 1, GEMM_MR, bp, c, ldc, mr, nr, accumulate);
}

/* The same on GEMM_MR whole rows of a row-major A read in place (rows ``sam`` apart), unpacked. */
static void graphnn_micro_rows(int64_t kc, const float* restrict a, int64_t sam, const float* restrict bp, float* c,
                               int64_t ldc, int64_t nr, int accumulate) {
    if (nr > 16) graphnn_micro_v(2, kc, a, sam, 1, bp, c, ldc, GEMM_MR, nr, accumulate);
    else graphnn_micro_v(1, kc, a, sam, 1, bp, c, ldc, GEMM_MR, nr, accumulate);
}

#ifdef GRAPHNN_TRANSPOSE16
%(SUMS16)s

/* A 4 x 4 tile of C = A B where both operands run contiguously along k (A's rows, B's columns:
 * a Linear layer's X W^T), as dot products: 16-lane partial sums over k, the k %% 16 tail from
 * zero-padded copies, then the 16 horizontal sums together. Rows past ``mr`` and columns past
 * ``nr`` repeat the last valid one (valid memory, results dropped). */
static void graphnn_dot_tile(int64_t k, const float* a, int64_t sam, const float* b, int64_t sbn,
                             float* c, int64_t ldc, int64_t mr, int64_t nr) {
    const float* ar[4];
    const float* br[4];
    for (int r = 0; r < 4; ++r) ar[r] = a + (r < mr ? r : mr - 1) * sam;
    for (int j = 0; j < 4; ++j) br[j] = b + (j < nr ? j : nr - 1) * sbn;
    graphnn_v16 acc[16];
    for (int q = 0; q < 16; ++q) acc[q] = (graphnn_v16){0};
    const int64_t k16 = k / 16 * 16;
    for (int64_t kk = 0; kk < k16; kk += 16) {
        graphnn_v16 x[4], y[4];
        for (int r = 0; r < 4; ++r) x[r] = *(const graphnn_v16u*)(ar[r] + kk);
        for (int j = 0; j < 4; ++j) y[j] = *(const graphnn_v16u*)(br[j] + kk);
#if defined(__GNUC__) && defined(__x86_64__)
        /* keep each operand in a register: the compiler would otherwise fold one operand's loads
         * into the four multiply-adds that use it, and the loads, not the FMAs, would bound the loop */
        for (int q = 0; q < 4; ++q) __asm__("" : "+v"(x[q]), "+v"(y[q]));
#endif
        for (int r = 0; r < 4; ++r)
            for (int j = 0; j < 4; ++j) acc[4 * r + j] += x[r] * y[j];
    }
    if (k16 < k) {
        float xt[4][16] __attribute__((aligned(64))) = {{0}}, yt[4][16] __attribute__((aligned(64))) = {{0}};
        for (int r = 0; r < 4; ++r) memcpy(xt[r], ar[r] + k16, (size_t)(k - k16) * sizeof(float));
        for (int j = 0; j < 4; ++j) memcpy(yt[j], br[j] + k16, (size_t)(k - k16) * sizeof(float));
        for (int r = 0; r < 4; ++r)
            for (int j = 0; j < 4; ++j) acc[4 * r + j] += *(graphnn_v16*)xt[r] * *(graphnn_v16*)yt[j];
    }
    const graphnn_v16 sums = graphnn_sums16(acc);
    for (int64_t r = 0; r < mr; ++r)
        for (int64_t j = 0; j < nr; ++j) c[r * ldc + j] = sums[graphnn_sum_lane[4 * r + j]];
}

/* Columns [n0, n1) of C = A B (all M rows) by dot-product tiles, with no packing: for a product
 * with few rows, packing B (the weight) would cost more than the product. Each group of 4
 * columns stays in L1 while every row of A passes it, so B is read once. */
static void graphnn_dot_block(int64_t m, int64_t n0, int64_t n1, int64_t k, const float* a, int64_t sam,
                              const float* b, int64_t sbn, float* c, int64_t ldc) {
    for (int64_t j = n0; j < n1; j += 4)
        for (int64_t i = 0; i < m; i += 4)
            graphnn_dot_tile(k, a + i * sam, sam, b + j * sbn, sbn, c + i * ldc + j, ldc,
                             m - i < 4 ? m - i : 4, n1 - j < 4 ? n1 - j : 4);
}
#define GRAPHNN_DOT 1
#endif

/* What a fused matmul does with a finished block of its product: rows [m0, m1) x columns
 * [n0, n1) of C hold their final sums, ``c`` points at element (m0, n0) and rows are ldc apart.
 * Called by the thread that computed the block, while the block is still in its cache. */
typedef void (*graphnn_epilogue)(void* context, const float* c, int64_t ldc, int64_t m0, int64_t m1,
                                 int64_t n0, int64_t n1);

/* Rows [m0, m1) x columns [n0, n1) of C = A B, with this thread's scratch; the epilogue (if
 * any) runs on each GEMM_MC-row block after its last k panel. With ``dot``, by dot-product tiles
 * instead (no packing), then the epilogue on the whole block. */
static void graphnn_sgemm_block(int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t k,
                                const float* a, int64_t sam, int64_t sak, const float* b, int64_t sbk, int64_t sbn,
                                float* c, int64_t ldc, graphnn_epilogue epilogue, void* context, int thread, int dot) {
#ifdef GRAPHNN_DOT
    if (dot) {
        graphnn_dot_block(m1 - m0, n0, n1, k, a + m0 * sam, sam, b, sbn, c + m0 * ldc, ldc);
        if (epilogue) epilogue(context, c + m0 * ldc + n0, ldc, m0, m1, n0, n1);
        return;
    }
#endif
    (void)dot;
    const int64_t n = n1 - n0;
    const int64_t n_padded = (n + GEMM_NR - 1) / GEMM_NR * GEMM_NR;
    float* bp = graphnn_scratch(0, thread, (size_t)(GEMM_KC * n_padded));
    float* ap = graphnn_scratch(2, thread, (size_t)(GEMM_MC * GEMM_KC));
    for (int64_t k0 = 0; k0 < k; k0 += GEMM_KC) {
        const int64_t kc = k - k0 < GEMM_KC ? k - k0 : GEMM_KC;
        graphnn_pack_b(b + n0 * sbn, sbk, sbn, k0, kc, n, bp);
        for (int64_t i0 = m0; i0 < m1; i0 += GEMM_MC) {
            const int64_t mc = m1 - i0 < GEMM_MC ? m1 - i0 : GEMM_MC;
            /* a row-major A is read in place (its rows are contiguous along k already); only an
             * edge of fewer than GEMM_MR rows is packed (zero-padded) */
            const int64_t in_place = sak == 1 ? mc / GEMM_MR * GEMM_MR : 0;
            graphnn_pack_a(a, sam, sak, i0 + in_place, mc - in_place, k0, kc, ap);
            for (int64_t j = 0; j < n; j += GEMM_NR) {
                const int64_t nr = n - j < GEMM_NR ? n - j : GEMM_NR;
                for (int64_t i = 0; i < mc; i += GEMM_MR) {
                    const int64_t mr = mc - i < GEMM_MR ? mc - i : GEMM_MR;
                    float* tile = c + (i0 + i) * ldc + n0 + j;
                    if (i < in_place) {
                        graphnn_micro_rows(kc, a + (i0 + i) * sam + k0, sam, bp + j * kc, tile, ldc, nr, k0 > 0);
                    } else {
                        graphnn_micro(kc, ap + (i - in_place) * kc, bp + j * kc, tile, ldc, mr, nr, k0 > 0);
                    }
                }
            }
            if (epilogue && k0 + kc == k) epilogue(context, c + i0 * ldc + n0, ldc, i0, i0 + mc, n0, n1);
        }
    }
}

/* The same, GEMM_NC columns at a time: a packed panel of B (GEMM_KC x GEMM_NC) stays in L2 while
 * the rows pass it (a channels-first convolution's N*Ho*Wo columns would not). */
static void graphnn_sgemm_columns(int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t k,
                                  const float* a, int64_t sam, int64_t sak, const float* b, int64_t sbk, int64_t sbn,
                                  float* c, int64_t ldc, graphnn_epilogue epilogue, void* context, int thread, int dot) {
    if (dot) {  /* unpacked: no panel to keep */
        graphnn_sgemm_block(m0, m1, n0, n1, k, a, sam, sak, b, sbk, sbn, c, ldc, epilogue, context, thread, dot);
        return;
    }
    for (int64_t j0 = n0; j0 < n1; j0 += GEMM_NC)
        graphnn_sgemm_block(m0, m1, j0, n1 - j0 < GEMM_NC ? n1 : j0 + GEMM_NC, k, a, sam, sak, b, sbk, sbn, c, ldc,
                            epilogue, context, thread, 0);
}

/* Threads split C into row blocks (each packs all of B, its own rows of A) when B is the smaller
 * operand to pack twice, and into column blocks (each packs all of A, its own columns of B)
 * otherwise. Both split in blocks of GEMM_SPLIT (the narrow micro-kernel's width, finer than
 * GEMM_NR so that N = 100 splits 48 + 52 rather than 64 + 36), so a row split of a dimension and a
 * column split of a dimension of the same size give each thread the same part.
 *
 * ``weight_rows``: C is a weight's gradient (m output features x n inputs, k = the batch) whose
 * epilogue updates the weight. Its forward GEMM (k x m, inner size n) splits its m columns when
 * m >= k, and then each thread reads only its own rows of the weight: the gradient GEMM splits by
 * rows too, so each thread updates the rows it will read, in its own cache. With k > m the forward
 * splits its k rows and every thread reads the whole weight; the cheaper split wins.
 * Small products stay on one thread. */
static void graphnn_sgemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t sam, int64_t sak,
                          const float* b, int64_t sbk, int64_t sbn, float* c, int64_t ldc,
                          graphnn_epilogue epilogue, void* context, int weight_rows) {
    if (k == 0) {
        for (int64_t i = 0; i < m; ++i) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        if (epilogue) epilogue(context, c, ldc, 0, m, 0, n);
        return;
    }
    int threads = 1;
#ifdef _OPENMP
    if (m * n * k >= ((int64_t)1 << 20)) threads = graphnn_team();
    if (threads > GRAPHNN_MAX_THREADS) threads = GRAPHNN_MAX_THREADS;
#endif
#ifdef GRAPHNN_DOT
    /* few rows, both operands contiguous along k (a Linear layer's forward at a small batch) */
    const int dot = k >= GEMM_DOT_K && n <= GEMM_DOT_N && sak == 1 && sbk == 1
                    && (m <= 4 || n < GEMM_NR || (m <= GEMM_DOT_M && k >= GEMM_DOT_LONG_K));
#else
    const int dot = 0;
#endif
    const int by_rows = !dot && ((weight_rows && m >= k) || n < m);
    const int64_t parts = ((by_rows ? m : n) + GEMM_SPLIT - 1) / GEMM_SPLIT;
    if (threads > parts) threads = (int)parts;
    if (threads <= 1) {
        graphnn_sgemm_columns(0, m, 0, n, k, a, sam, sak, b, sbk, sbn, c, ldc, epilogue, context, 0, dot);
        return;
    }
    #pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        const int t = 0, nt = 1;
#endif
        const int64_t start = parts * t / nt * GEMM_SPLIT, stop = parts * (t + 1) / nt * GEMM_SPLIT;
        if (by_rows && start < m) {
            graphnn_sgemm_columns(start, stop < m ? stop : m, 0, n, k, a, sam, sak, b, sbk, sbn, c, ldc,
                                  epilogue, context, t, dot);
        } else if (!by_rows && start < n) {
            graphnn_sgemm_columns(0, m, start, stop < n ? stop : n, k, a, sam, sak, b, sbk, sbn, c, ldc,
                                  epilogue, context, t, dot);
        }
    }
}
""" % {"MR": MR, "NR": NR, "KC": KC, "MC": MC, "NC": NC, "DOT_M": DOT_M, "DOT_K": DOT_K, "DOT_LONG_K": DOT_LONG_K, "DOT_N": DOT_N, "TRANSPOSE16": _transpose16(), "SUMS16": _sums16()[0]}
