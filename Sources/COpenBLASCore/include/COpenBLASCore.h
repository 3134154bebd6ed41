#ifndef DIFFEQNET_COPENBLASCORE_H
#define DIFFEQNET_COPENBLASCORE_H

/// OpenBLAS's DYNAMIC_ARCH build picks its kernels for the CPU once, when the library loads. A
/// release older than the CPU does not know its model and falls back to the Prescott (SSE3)
/// kernels: Debian 12's 0.3.21 does so on Emerald Rapids, where its sgemm then runs at a fifth
/// of the rate of its SkylakeX (AVX-512) kernels.
///
/// `diffeqnet_openblas_select_native_core` repairs that one case. When OpenBLAS runs a core
/// older than AVX2 (Prescott, Core2, Penryn, Dunnington, Nehalem, Sandybridge) while this CPU and
/// its operating system support AVX-512 (F, CD, BW, DQ, VL: OpenBLAS's SkylakeX set) or AVX2 and
/// FMA (its Haswell set), it re-runs OpenBLAS's own selection with `OPENBLAS_CORETYPE` naming the
/// newer set, then restores the environment. It does nothing when the user set
/// `OPENBLAS_CORETYPE` (their choice stands), when OpenBLAS was built for one CPU (the selection
/// entry points are absent; they are weak references here), or on other architectures.
///
/// Call it before any BLAS routine runs and while no other thread calls one: it swaps the table
/// of kernels every BLAS call reads. Returns 1 when it changed the core, else 0.
int diffeqnet_openblas_select_native_core(void);

/// 1 when OpenBLAS's kernel set `name` (as `openblas_get_corename` gives it, in any case) is one
/// of those older than AVX2 listed above, which the repair replaces; 0 otherwise (always 0 off
/// x86-64).
int diffeqnet_openblas_core_predates_avx2(const char *name);

#endif
