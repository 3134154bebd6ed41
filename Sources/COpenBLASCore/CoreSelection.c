// See COpenBLASCore.h for the contract. The two selection entry points are exported by every
// DYNAMIC_ARCH build of OpenBLAS (they are what its load-time constructor calls) but declared in
// no public header; `gotoblas_dynamic_init` reads OPENBLAS_CORETYPE, OpenBLAS's documented
// override, and returns at once unless `gotoblas_dynamic_quit` cleared the current choice.

#include "COpenBLASCore.h"
#include "CSIMDSupport.h"

#if defined(__x86_64__)

#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));
extern char *openblas_get_corename(void) __attribute__((weak));

/// OpenBLAS's name for the newest kernel set this CPU runs, or NULL when it has no AVX2.
static const char *nativeCore(void) {
  __builtin_cpu_init();  // gcc and clang also check that the OS saves the vector registers
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd")
      && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
      && __builtin_cpu_supports("avx512vl")) {
    return "SkylakeX";
  }
  if (diffeqnet_cpu_has_avx2_fma()) return "Haswell";
  return NULL;
}

int diffeqnet_openblas_core_predates_avx2(const char *name) {
  static const char *const old[] = {"Prescott", "Core2",   "Penryn",
                                    "Dunnington", "Nehalem", "Sandybridge"};
  for (size_t i = 0; i < sizeof old / sizeof old[0]; i++) {
    if (strcasecmp(name, old[i]) == 0) return 1;
  }
  return 0;
}

int diffeqnet_openblas_select_native_core(void) {
  if (!gotoblas_dynamic_init || !gotoblas_dynamic_quit || !openblas_get_corename) return 0;
  if (getenv("OPENBLAS_CORETYPE")) return 0;
  const char *current = openblas_get_corename();
  const char *native = nativeCore();
  if (!current || !native || !diffeqnet_openblas_core_predates_avx2(current)) return 0;
  setenv("OPENBLAS_CORETYPE", native, 1);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  unsetenv("OPENBLAS_CORETYPE");
  return 1;
}

#else

int diffeqnet_openblas_core_predates_avx2(const char *name) { return 0; }

int diffeqnet_openblas_select_native_core(void) { return 0; }

#endif
