/* What the C kernels of the core share about SIMD code.
 *
 * The vector code carries per-function target attributes instead of build-wide
 * -mavx512f, so that the extensions build with the distribution's default flags and
 * load on any x86-64: AVX-512 (T512) or AVX2+FMA (T256) functions only run after
 * fnn_cpu_level said the machine has them. Other architectures and compilers get the
 * portable loops only (FNN_X86 undefined).
 */
#ifndef FASTNN_SIMD_H
#define FASTNN_SIMD_H

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define FNN_X86 1
#include <immintrin.h>
#define T512 __attribute__((target("avx512f")))
#define T256 __attribute__((target("avx2,fma")))
#endif

/* Register-blocked kernels are always-inline functions of compile-time block sizes,
 * instantiated by a switch, so that their accumulator arrays live in registers. */
#if defined(_MSC_VER) && !defined(__clang__)
#define INL static __forceinline
#else
#define INL static inline __attribute__((always_inline))
#endif

#ifdef FNN_X86
/* The first n lanes (clamped to 0..8) of an AVX2 mask, for the masked loads and stores
 * of a row's last, partial vector. */
static const int fnn_mask8_tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

INL T256 __m256i fnn_mask8(int n)
{
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_loadu_si256((const __m256i *)(fnn_mask8_tab + 8 - n));
}
#endif

#endif
