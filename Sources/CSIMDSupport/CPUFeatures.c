#include "CSIMDSupport.h"

#if defined(__x86_64__)

// gcc's and clang's checks also ask the OS (xgetbv) whether it saves the wider registers.
int diffeqnet_cpu_has_avx2_fma(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

int diffeqnet_cpu_has_avx512f(void) {
  __builtin_cpu_init();
  return diffeqnet_cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f");
}

#else

int diffeqnet_cpu_has_avx2_fma(void) { return 0; }

int diffeqnet_cpu_has_avx512f(void) { return 0; }

#endif
