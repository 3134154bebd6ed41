/// ‖a − b‖₂ / ‖b‖₂, the error measure every numerical test states its tolerance in (the absolute
/// norm ‖a − b‖₂ when b is zero). Infinite when the sizes differ and NaN when either holds a NaN,
/// so that a comparison `≤ tolerance` fails rather than passes.
public func relativeError(_ a: [Double], _ b: [Double]) -> Double {
  guard a.count == b.count else { return .infinity }
  var difference = 0.0
  var reference = 0.0
  for (x, y) in zip(a, b) {
    difference += (x - y) * (x - y)
    reference += y * y
  }
  return reference == 0 ? difference.squareRoot() : (difference / reference).squareRoot()
}
