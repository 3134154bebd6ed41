// Prepended by the host to every program below: the element type T and, for kernels that size
// local-memory trees, the work-group size WG, both chosen with -D options
// (-D T=float, or -D T=double -D USE_FP64; -D WG=<power of two the device and kernel allow>).

#ifdef USE_FP64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef T
#error "T must be defined: -D T=float or -D T=double"
#endif
#ifndef WG
#define WG 256
#endif

