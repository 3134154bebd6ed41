import DiffEqNet
import FuzzSupport

// The CIFAR binary readers on raw and gzipped bytes (the first byte picks CIFAR-10 or -100).
fuzz { bytes in
  guard let kind = bytes.first else { return }
  let variant: CIFARReader.Variant = kind & 1 == 0 ? .cifar10 : .cifar100(fine: kind & 2 == 0)
  let records = try CIFARReader.records(
    fromFileContents: Array(bytes.dropFirst()), file: "fuzz.bin", variant: variant)
  precondition(records.pixels.count == records.labels.count * 3 * 32 * 32)
}
