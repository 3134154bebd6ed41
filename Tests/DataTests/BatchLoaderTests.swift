import DiffEqNet
import Foundation
import XCTest

/// Batching, seeded shuffling, augmentation pixels, normalisation and prefetching.
final class BatchLoaderTests: XCTestCase {
  /// `count` images of 1×4×4 with distinct pixels, labels i mod 3.
  func smallDataset(count: Int = 10) throws -> ImageDataset {
    try ImageDataset(
      name: "small", images: (0..<(count * 16)).map { UInt8($0 % 251) },
      labels: (0..<count).map { $0 % 3 }, channels: 1, height: 4, width: 4, classes: 3)
  }

  func testEpochOrderIsASeededPermutation() throws {
    let loader = try BatchLoader(smallDataset(count: 50), batchSize: 8, seed: 7)
    let order = loader.epochOrder(epoch: 0)
    XCTAssertEqual(order.sorted(), Array(0..<50))
    XCTAssertNotEqual(order, Array(0..<50))
    XCTAssertEqual(order, loader.epochOrder(epoch: 0))
    XCTAssertEqual(
      order, try BatchLoader(smallDataset(count: 50), batchSize: 3, seed: 7).epochOrder(epoch: 0))
    XCTAssertNotEqual(order, loader.epochOrder(epoch: 1))
    XCTAssertNotEqual(
      order, try BatchLoader(smallDataset(count: 50), batchSize: 8, seed: 8).epochOrder(epoch: 0))
    let unshuffled = try BatchLoader(smallDataset(count: 50), batchSize: 8, shuffle: false)
    XCTAssertEqual(unshuffled.epochOrder(epoch: 3), Array(0..<50))
  }

  func testShuffleIsRoughlyUniform() throws {
    // Where image 0 lands over many epochs: each of 5 positions about 1/5 of the time.
    let loader = try BatchLoader(smallDataset(count: 5), batchSize: 5, seed: 1)
    var counts = [Int](repeating: 0, count: 5)
    for e in 0..<5000 { counts[loader.epochOrder(epoch: e).firstIndex(of: 0)!] += 1 }
    for c in counts { XCTAssertEqual(Double(c), 1000, accuracy: 120, "\(counts)") }
  }

  func testBatchesCoverTheEpochOnce() throws {
    let data = try smallDataset()
    for dropLast in [false, true] {
      let loader = try BatchLoader(data, batchSize: 4, dropLast: dropLast, seed: 3)
      let batches = Array(loader.batches(epoch: 2))
      XCTAssertEqual(batches.count, dropLast ? 2 : 3)
      XCTAssertEqual(loader.batchesPerEpoch, batches.count)
      XCTAssertEqual(batches.map(\.count), dropLast ? [4, 4] : [4, 4, 2])
      let seen = batches.flatMap(\.indices)
      XCTAssertEqual(seen, Array(loader.epochOrder(epoch: 2).prefix(seen.count)))
      for (k, batch) in batches.enumerated() {
        XCTAssertEqual(batch.index, k)
        XCTAssertEqual(batch.epoch, 2)
        XCTAssertEqual(batch.labels, batch.indices.map { Float(data.labels[$0]) })
        XCTAssertEqual(batch.images.count, batch.count * 16)
        XCTAssertEqual(batch, try loader.batch(k, epoch: 2))
      }
      // Resuming mid-epoch gives the rest of the same epoch.
      XCTAssertEqual(Array(loader.batches(epoch: 2, startingAt: 1)), Array(batches.dropFirst()))
      XCTAssertTrue(Array(loader.batches(epoch: 2, startingAt: 99)).isEmpty)
    }
  }

  func testNormalisation() throws {
    let data = try ImageDataset(
      name: "n", images: [0, 1, 128, 255], labels: [0], channels: 1, height: 2, width: 2, classes: 1
    )
    let mnist = try BatchLoader(data, batchSize: 1, normalization: .mnist, shuffle: false)
    let batch = try mnist.batch(0, epoch: 0)
    XCTAssertEqual(
      batch.images, [0, 1, 128, 255].map { Float((Double($0) / 255 - 0.1307) / 0.3081) })
    XCTAssertEqual(batch.images[0], -0.42421, accuracy: 1e-5)
    XCTAssertEqual(batch.images[3], 2.82149, accuracy: 1e-5)
    let identity = try BatchLoader(data, batchSize: 1, shuffle: false)
    XCTAssertEqual(
      try identity.batch(0, epoch: 0).images, [0, 1, 128, 255].map { Float(Double($0) / 255) })

    // Per channel: channel c of a 3-channel image uses mean[c], std[c].
    let rgb = try ImageDataset(
      name: "rgb", images: [255, 255, 255], labels: [0], channels: 3, height: 1, width: 1,
      classes: 1)
    let cifar = try BatchLoader(rgb, batchSize: 1, normalization: .cifar10)
    let expected = zip(Normalization.cifar10.mean, Normalization.cifar10.std).map {
      Float((1 - $0) / $1)
    }
    XCTAssertEqual(try cifar.batch(0, epoch: 0).images, expected)
    XCTAssertEqual(Normalization.cifar10.mean, [0.4914, 0.4822, 0.4465])
    XCTAssertEqual(Normalization.cifar100.std, [0.2673, 0.2564, 0.2762])

    let stats = Normalization.computed(from: rgb)
    XCTAssertEqual(stats.mean, [1, 1, 1])
    XCTAssertEqual(stats.std, [1, 1, 1])  // constant channels
  }

  /// Image `image` (c×h×w) cropped at offset (dy, dx) of its `pad`-padded version, then mirrored.
  func reference(
    _ image: [UInt8], c: Int, h: Int, w: Int, pad: Int, dy: Int, dx: Int, flip: Bool
  ) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: image.count)
    for ch in 0..<c {
      for y in 0..<h {
        for x in 0..<w {
          let sy = y + dy - pad
          let sx = (flip ? w - 1 - x : x) + dx - pad
          if sy >= 0 && sy < h && sx >= 0 && sx < w {
            out[(ch * h + y) * w + x] = image[(ch * h + sy) * w + sx]
          }
        }
      }
    }
    return out
  }

  /// The augmented images of many epochs, converted back to pixel values.
  func augmentedImages(_ data: ImageDataset, _ augmentation: Augmentation, epochs: Int) throws
    -> [[UInt8]]
  {
    let loader = try BatchLoader(data, batchSize: 1, augmentation: augmentation, seed: 11)
    return (0..<epochs).map { e in
      Array(loader.batches(epoch: e)).flatMap { batch in
        [batch.images.map { UInt8(($0 * 255).rounded()) }]
      }
    }.flatMap { $0 }
  }

  func testCropProducesZeroPaddedShifts() throws {
    // 1×3×3 with pixels 1…9: every output must be one of the 9 shifts, and all must occur.
    let image: [UInt8] = Array(1...9)
    let data = try ImageDataset(
      name: "crop", images: image, labels: [0], channels: 1, height: 3, width: 3, classes: 1)
    var candidates: [[UInt8]: (Int, Int)] = [:]
    for dy in 0...2 {
      for dx in 0...2 {
        candidates[reference(image, c: 1, h: 3, w: 3, pad: 1, dy: dy, dx: dx, flip: false)] = (
          dy, dx
        )
      }
    }
    XCTAssertEqual(candidates.count, 9)
    // Spot-check the reference itself against hand-written pixels: shifted down-right by one.
    XCTAssertEqual(
      reference(image, c: 1, h: 3, w: 3, pad: 1, dy: 0, dx: 0, flip: false),
      [0, 0, 0, 0, 1, 2, 0, 4, 5])
    XCTAssertEqual(
      reference(image, c: 1, h: 3, w: 3, pad: 1, dy: 2, dx: 1, flip: false),
      [4, 5, 6, 7, 8, 9, 0, 0, 0])
    var seen = Set<[UInt8]>()
    for out in try augmentedImages(data, Augmentation(cropPadding: 1), epochs: 300) {
      XCTAssertNotNil(candidates[out], "\(out) is not a padded crop")
      seen.insert(out)
    }
    XCTAssertEqual(seen.count, 9)
  }

  func testFlipMirrorsRows() throws {
    let image: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]  // 2 channels of 2×3
    let data = try ImageDataset(
      name: "flip", images: image, labels: [0], channels: 2, height: 2, width: 3, classes: 1)
    let mirrored: [UInt8] = [3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10]
    var flips = 0
    let outputs = try augmentedImages(data, Augmentation(horizontalFlip: true), epochs: 200)
    for out in outputs {
      XCTAssertTrue(out == image || out == mirrored, "\(out)")
      if out == mirrored { flips += 1 }
    }
    XCTAssertEqual(Double(flips), 100, accuracy: 30)
  }

  func testCropAndFlipTogether() throws {
    // 3×4×5 image, padding 2: each output is flip(crop(image)) for some offset and flip.
    let image = testPixels(60, seed: 5).map { Swift.max($0, 1) }  // no zeros, so padding shows
    let data = try ImageDataset(
      name: "both", images: image, labels: [0], channels: 3, height: 4, width: 5, classes: 1)
    var candidates = Set<[UInt8]>()
    for dy in 0...4 {
      for dx in 0...4 {
        for flip in [false, true] {
          candidates.insert(reference(image, c: 3, h: 4, w: 5, pad: 2, dy: dy, dx: dx, flip: flip))
        }
      }
    }
    var seen = Set<[UInt8]>()
    for out in try augmentedImages(data, .cifar.with(padding: 2), epochs: 400) {
      XCTAssertTrue(candidates.contains(out))
      seen.insert(out)
    }
    XCTAssertGreaterThan(seen.count, 40)  // of 50 possibilities
  }

  func testAugmentationIsDeterministicPerSeedEpochAndBatch() throws {
    let data = try smallDataset(count: 12)
    let a = try BatchLoader(data, batchSize: 4, augmentation: .cifar, seed: 5)
    let b = try BatchLoader(data, batchSize: 4, augmentation: .cifar, seed: 5)
    let c = try BatchLoader(data, batchSize: 4, augmentation: .cifar, seed: 6)
    XCTAssertEqual(Array(a.batches(epoch: 4)), Array(b.batches(epoch: 4)))
    XCTAssertNotEqual(Array(a.batches(epoch: 4)), Array(c.batches(epoch: 4)))
    XCTAssertNotEqual(
      Array(a.batches(epoch: 4)).map(\.images), Array(a.batches(epoch: 5)).map(\.images))
    XCTAssertEqual(try a.batch(2, epoch: 4), Array(a.batches(epoch: 4))[2])
  }

  func testPrefetcherYieldsTheSameBatches() throws {
    let data = try ImageDataset.mnist(
      directory: repositoryRoot.appendingPathComponent("data/mnist-5k"), split: .test)
    let loader = try BatchLoader(
      data, batchSize: 64, normalization: .mnist, augmentation: Augmentation(cropPadding: 2),
      seed: 9)
    for (epoch, first) in [(0, 0), (3, 5)] {
      let direct = Array(loader.batches(epoch: epoch, startingAt: first))
      XCTAssertEqual(direct.count, loader.batchesPerEpoch - first)
      for depth in [1, 3] {
        let prefetched = Array(Prefetcher(loader, epoch: epoch, startingAt: first, depth: depth))
        XCTAssertEqual(prefetched, direct, "epoch \(epoch) from \(first), depth \(depth)")
      }
    }
    // Abandoning a prefetcher midway stops its thread instead of blocking it forever.
    for _ in 0..<20 {
      let p = Prefetcher(loader, epoch: 1, depth: 1)
      XCTAssertEqual(p.next()?.index, 0)
    }
  }

  func testTensors() throws {
    let loader = try BatchLoader(smallDataset(), batchSize: 4, normalization: .mnist, seed: 2)
    let batch = try loader.batch(1, epoch: 0)
    for dtype in DType.allCases {
      let (x, y) = try batch.tensors(on: cpu, dtype: dtype)
      XCTAssertEqual(x.shape, [4, 1, 4, 4])
      XCTAssertEqual(y.shape, [4])
      XCTAssertEqual(x.dtype, dtype)
      XCTAssertEqual(try x.toFloats(), batch.images)
      XCTAssertEqual(try y.toFloats(), batch.labels)
    }
  }

  func testInvalidConfigurationsThrow() throws {
    let data = try smallDataset()
    expectDatasetError("batch size 0") { _ = try BatchLoader(data, batchSize: 0) }
    expectDatasetError("two means for one channel") {
      _ = try BatchLoader(
        data, batchSize: 1, normalization: Normalization(mean: [0, 0], std: [1, 1]))
    }
    expectDatasetError("zero std") {
      _ = try BatchLoader(data, batchSize: 1, normalization: Normalization(mean: [0], std: [0]))
    }
    expectDatasetError("padding larger than the image") {
      _ = try BatchLoader(data, batchSize: 1, augmentation: Augmentation(cropPadding: 5))
    }
    let loader = try BatchLoader(data, batchSize: 4)
    expectDatasetError("batch out of range") { _ = try loader.batch(3, epoch: 0) }
  }
}

extension Augmentation {
  func with(padding: Int) -> Augmentation {
    var copy = self
    copy.cropPadding = padding
    return copy
  }
}
