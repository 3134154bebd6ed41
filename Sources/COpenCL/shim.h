#ifndef DIFFEQNET_COPENCL_SHIM_H
#define DIFFEQNET_COPENCL_SHIM_H
// OpenCL 1.2 is the newest version every vendor's driver (NVIDIA's included) implements.
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#endif
