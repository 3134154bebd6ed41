import Foundation
import Kernels

/// How a data folder's files are laid out, by the name settings and the command line use.
public enum DataFormat: String, Sendable, NamedSetting {
  /// IDX files, raw or gzipped (`train-images-idx3-ubyte[.gz]`, …).
  case mnist
  /// Fashion-MNIST: the same IDX layout as MNIST.
  case fashionMNIST = "fashion-mnist"
  /// CIFAR-10's binary version (`data_batch_1.bin` … `test_batch.bin`).
  case cifar10
  /// CIFAR-100's binary version (`train.bin`, `test.bin`), fine labels.
  case cifar100

  public static let settingName = "data format"

  /// Colour images whose random crops are also flipped horizontally in training.
  public var isCIFAR: Bool { self == .cifar10 || self == .cifar100 }

  /// The standard per-channel normalisation of this data set.
  public var standardNormalization: Normalization {
    switch self {
    case .cifar10: return .cifar10
    case .cifar100: return .cifar100
    case .mnist, .fashionMNIST: return .mnist
    }
  }

  /// One split of the data set in `directory`.
  public func load(_ directory: URL, split: ImageDataset.Split) throws -> ImageDataset {
    switch self {
    case .cifar10: return try ImageDataset.cifar10(directory: directory, split: split)
    case .cifar100: return try ImageDataset.cifar100(directory: directory, split: split)
    case .mnist, .fashionMNIST:
      return try ImageDataset.mnist(directory: directory, split: split, name: rawValue)
    }
  }
}
