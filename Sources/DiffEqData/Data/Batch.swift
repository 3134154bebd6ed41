import DiffEqCore
import Kernels

/// One mini-batch on the host, ready to copy to a device.
public struct Batch: Sendable, Equatable {
  /// `count × channels × height × width` normalised (and possibly augmented) pixels.
  public let images: [Float]
  /// The class index of each image, as a float (the form the loss functions take).
  public let labels: [Float]
  /// The position of each image in the data set.
  public let indices: [Int]
  public let channels: Int
  public let height: Int
  public let width: Int
  /// The epoch and the batch's position within it.
  public let epoch: Int
  public let index: Int

  /// The number of images.
  public var count: Int { indices.count }

  /// The images as a `[count, channels, height, width]` tensor and the labels as a `[count]`
  /// tensor, both of `dtype`, on `backend`.
  public func tensors(on backend: any Backend, dtype: DType = .float32) throws -> (
    images: Tensor, labels: Tensor
  ) {
    let imageShape = [count, channels, height, width]
    switch dtype {
    case .float32:
      return (
        try Tensor(images, shape: imageShape, on: backend),
        try Tensor(labels, shape: [count], on: backend)
      )
    case .float64:
      return (
        try Tensor(images.map(Double.init), shape: imageShape, dtype: .float64, on: backend),
        try Tensor(labels.map(Double.init), shape: [count], dtype: .float64, on: backend)
      )
    }
  }
}
