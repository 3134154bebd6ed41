import DiffEqNet
import FuzzSupport

// The IDX readers on raw and gzipped bytes (the first byte picks images or labels).
fuzz { bytes in
  guard let kind = bytes.first else { return }
  let rest = Array(bytes.dropFirst())
  if kind & 1 == 0 {
    let images = try IDXReader.images(fromFileContents: rest, file: "fuzz-idx3-ubyte")
    precondition(images.pixels.count == images.count * images.height * images.width)
  } else {
    let labels = try IDXReader.labels(fromFileContents: rest, file: "fuzz-idx1-ubyte")
    precondition(labels.allSatisfy { (0..<10).contains($0) })
  }
}
