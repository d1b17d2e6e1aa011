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

#endif
