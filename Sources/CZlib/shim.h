#ifndef DIFFEQNET_CZLIB_SHIM_H
#define DIFFEQNET_CZLIB_SHIM_H
// Debian: zlib1g-dev. inflateInit2/deflateInit2 are macros, which Swift cannot call, so the
// wrappers below fix the gzip window settings in one place.
#include <zlib.h>

/// inflateInit2 with windowBits 15 + 32: a zlib or gzip stream, detected from its header.
static inline int czlib_inflate_init_gzip(z_stream *stream) {
  return inflateInit2(stream, 15 + 32);
}

/// deflateInit2 with windowBits 15 + 16: a gzip stream (header and CRC-32 trailer).
static inline int czlib_deflate_init_gzip(z_stream *stream, int level) {
  return deflateInit2(stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}
#endif
