import COpenCL
import Foundation

/// Convolution lowering and average pooling (NCHW).
extension OpenCLBackend {
  public func im2col(
    _ x: DeviceBuffer, _ cols: DeviceBuffer, _ g: ConvGeometry, dtype: DType
  ) throws {
    let local = try local2D(width: g.columns, .conv, dtype)
    try launch(
      .im2col, dtype,
      [
        .mem(x), .mem(cols), .int(g.c), .int(g.h), .int(g.w), .int(g.kh), .int(g.kw),
        .int(g.stride), .int(g.pad), .int(g.outH), .int(g.outW), .int(g.columns), .int(g.patch),
      ], global: [g.columns, g.patch], local: local)
  }

  public func col2im(
    _ cols: DeviceBuffer, _ x: DeviceBuffer, _ g: ConvGeometry, dtype: DType
  ) throws {
    let count = g.n * g.c * g.h * g.w
    try launch(
      .col2im, dtype,
      [
        .mem(cols), .mem(x), .int(g.c), .int(g.h), .int(g.w), .int(g.kh), .int(g.kw),
        .int(g.stride), .int(g.pad), .int(g.outH), .int(g.outW), .int(g.columns), .int(count),
      ], global: [count])
  }

  public func avgPool(
    _ x: DeviceBuffer, _ y: DeviceBuffer, _ g: PoolGeometry, dtype: DType
  ) throws {
    let count = g.n * g.c * g.outH * g.outW
    try launch(
      .avgPool, dtype,
      [
        .mem(x), .mem(y), .int(g.h), .int(g.w), .int(g.k), .int(g.stride), .int(g.outH),
        .int(g.outW), .int(count),
      ], global: [count])
  }

  public func avgPoolGrad(
    _ dy: DeviceBuffer, _ dx: DeviceBuffer, _ g: PoolGeometry, dtype: DType
  ) throws {
    let count = g.n * g.c * g.h * g.w
    try launch(
      .avgPoolGrad, dtype,
      [
        .mem(dy), .mem(dx), .int(g.h), .int(g.w), .int(g.k), .int(g.stride), .int(g.outH),
        .int(g.outW), .int(count),
      ], global: [count])
  }
}
