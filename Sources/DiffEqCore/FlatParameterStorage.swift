import Kernels

/// Trainable parameters stored as views of one flat buffer, so that an optimiser updates all of
/// them in one launch.
///
/// Parameter k occupies elements `offsets[k] ..< offsets[k] + counts[k]` of the flat buffer;
/// each offset is a multiple of the backend's view alignment, and the padding between ranges
/// holds zeros, which every optimiser update keeps at zero. After `init` each parameter's value
/// is a tensor on its view. A value replaced later (a checkpoint load, `withParameters`) is a
/// tensor on its own buffer again; `bind()` copies such values back in and restores the views.
final class FlatParameterStorage {
  let parameters: [Parameter]
  let shapes: [[Int]]
  let counts: [Int]
  let offsets: [Int]
  /// Elements of every flat buffer of this layout, padding included.
  let count: Int
  let backend: any Backend
  let dtype: DType
  /// The parameters' values.
  let values: DeviceBuffer
  private let views: [DeviceBuffer]

  /// Lays out `parameters`, copies their values in and rebinds them to views; nil when there
  /// is nothing to lay out or the parameters do not share one backend and element type.
  init?(_ parameters: [Parameter]) throws {
    guard let first = parameters.first?.value,
      parameters.allSatisfy({ $0.value.backend === first.backend && $0.value.dtype == first.dtype })
    else { return nil }
    self.parameters = parameters
    self.backend = first.backend
    self.dtype = first.dtype
    shapes = parameters.map(\.value.shape)
    counts = parameters.map(\.value.count)
    let align = max(1, backend.viewAlignment / dtype.size)
    var offsets: [Int] = []
    var end = 0
    for n in counts {
      let start = (end + align - 1) / align * align
      offsets.append(start)
      end = start + n
    }
    self.offsets = offsets
    count = end
    let (backend, dtype) = (first.backend, first.dtype)
    let values = try Self.zeroed(end, dtype, backend)
    self.values = values
    views = try zip(offsets, counts).map {
      try backend.view(of: values, offset: $0, count: $1, dtype: dtype)
    }
    try bind()
  }

  private static func zeroed(_ count: Int, _ dtype: DType, _ backend: any Backend) throws
    -> DeviceBuffer
  {
    let buffer = try backend.allocate(count, dtype)
    try backend.fill(buffer, value: 0, count: count, dtype: dtype)
    return buffer
  }

  /// Copies each value that is not its view into place (one `pack`) and makes the views the
  /// parameters' values again.
  func bind() throws {
    let loose = parameters.indices.filter { parameters[$0].value.buffer !== views[$0] }
    if loose.isEmpty { return }
    for k in loose {
      let value = parameters[k].value
      guard value.shape == shapes[k], value.dtype == dtype, value.backend === backend else {
        throw TensorError.invalidArgument(
          op: "flat parameter storage",
          reason: "parameter \(k) changed from \(shapes[k]) \(dtype) to \(value.shape) "
            + "\(value.dtype) on \(value.backend.name)")
      }
    }
    try backend.pack(
      loose.map { parameters[$0].value.buffer }, counts: loose.map { counts[$0] },
      offsets: loose.map { offsets[$0] }, into: values, dtype: dtype)
    for k in loose {
      parameters[k].value = Tensor(
        shape: shapes[k], dtype: dtype, backend: backend, buffer: views[k])
    }
  }

  /// A zeroed flat buffer of this layout (optimiser state, packed gradients).
  func makeBuffer() throws -> DeviceBuffer { try Self.zeroed(count, dtype, backend) }

  /// Tensors shaped like the parameters on the views of `buffer`, a buffer of this layout.
  func tensors(viewing buffer: DeviceBuffer) throws -> [Tensor] {
    try parameters.indices.map { k in
      Tensor(
        shape: shapes[k], dtype: dtype, backend: backend,
        buffer: try backend.view(of: buffer, offset: offsets[k], count: counts[k], dtype: dtype))
    }
  }

  /// Copies `tensors` (shaped like the parameters, in their order) into `buffer`.
  func pack(_ tensors: [Tensor], into buffer: DeviceBuffer) throws {
    try backend.pack(
      tensors.map(\.buffer), counts: counts, offsets: offsets, into: buffer, dtype: dtype)
  }
}
