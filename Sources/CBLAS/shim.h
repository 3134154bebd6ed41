#ifndef DIFFEQNET_CBLAS_SHIM_H
#define DIFFEQNET_CBLAS_SHIM_H
// Found through pkg-config `openblas` (Debian: libopenblas-dev, openblas-pthread).
#include <cblas.h>
#endif
