import DiffEqData
import Foundation

/// SVG pictures of a 2-D density and of point sets: the run folder's `density.svg` (the learned
/// density on a grid beside a histogram of the test data) and `samples.svg` (the flow's samples
/// beside the data).
struct DensityPlot {
  static let panel = 320.0
  static let margin = 30.0

  /// A heat map of `values` (row-major n × n, y outer, non-negative) as one panel at `x0`.
  static func heatMap(_ values: [Double], n: Int, x0: Double, title: String) -> String {
    let top = values.max() ?? 1
    let cell = panel / Double(n)
    var out = [text(title, x: x0, y: 18)]
    for j in 0..<n {
      for i in 0..<n {
        let v = top > 0 ? values[j * n + i] / top : 0
        guard v > 0.004 else { continue }
        // White to dark blue; y grows upwards.
        let r = Int(255 * (1 - v * 0.9))
        let g = Int(255 * (1 - v * 0.75))
        let y = margin + panel - Double(j + 1) * cell
        out.append(
          "<rect x=\"\(f(x0 + Double(i) * cell))\" y=\"\(f(y))\" width=\"\(f(cell + 0.3))\" height=\"\(f(cell + 0.3))\" fill=\"rgb(\(r),\(g),255)\"/>"
        )
      }
    }
    out.append(frame(x0))
    return out.joined(separator: "\n")
  }

  /// A scatter of the first two columns of `points` within [lower, upper]² as one panel at `x0`.
  static func scatter(
    _ points: [Double], dimension: Int, lower: Double, upper: Double, x0: Double, title: String,
    colour: String
  ) -> String {
    var out = [text(title, x: x0, y: 18)]
    for k in 0..<(points.count / dimension) {
      let (px, py) = (points[k * dimension], points[k * dimension + 1])
      guard px.isFinite, py.isFinite, (lower...upper).contains(px), (lower...upper).contains(py)
      else { continue }
      let sx = x0 + (px - lower) / (upper - lower) * panel
      let sy = margin + panel - (py - lower) / (upper - lower) * panel
      out.append("<circle cx=\"\(f(sx))\" cy=\"\(f(sy))\" r=\"1.2\" fill=\"\(colour)\"/>")
    }
    out.append(frame(x0))
    return out.joined(separator: "\n")
  }

  /// Panels side by side in one SVG document.
  static func document(_ panels: [String]) -> String {
    let width = Int(Double(panels.count) * (panel + margin) + margin)
    let height = Int(panel + 2 * margin)
    return
      ([
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\">",
        "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
      ] + panels + ["</svg>"]).joined(separator: "\n") + "\n"
  }

  /// Where panel k starts.
  static func x(_ k: Int) -> Double { margin + Double(k) * (panel + margin) }

  static func frame(_ x0: Double) -> String {
    "<rect x=\"\(f(x0))\" y=\"\(f(margin))\" width=\"\(f(panel))\" height=\"\(f(panel))\" fill=\"none\" stroke=\"#888\"/>"
  }

  static func text(_ s: String, x: Double, y: Double) -> String {
    let escaped = s.replacingOccurrences(of: "&", with: "&amp;")
      .replacingOccurrences(of: "<", with: "&lt;")
    return
      "<text x=\"\(f(x))\" y=\"\(f(y))\" font-family=\"sans-serif\" font-size=\"12\">\(escaped)</text>"
  }

  static func f(_ v: Double) -> String { String(format: "%.1f", v) }
}

extension DensityTask {
  /// The square the pictures show: the test data's range of its first two columns, padded.
  func plotBounds() -> (lower: Double, upper: Double) {
    var lo = Double.infinity
    var hi = -Double.infinity
    for i in 0..<test.count {
      for v in test.row(i).prefix(2) {
        lo = min(lo, v)
        hi = max(hi, v)
      }
    }
    let pad = 0.1 * max(hi - lo, 1e-6)
    return (lo - pad, hi + pad)
  }

  /// `samples.svg` (the test data beside 2,000 of the flow's samples, first two columns) and,
  /// for 2-D data, `density.svg` (a histogram of the test data beside the learned density on a
  /// 60 × 60 grid).
  public func writeArtifacts(to folder: URL, history: [EpochMetrics]) throws {
    guard train.dimension >= 2 else { return }
    let (lower, upper) = plotBounds()
    let epoch = history.count
    let d = test.dimension
    let samples = try self.samples(count: 2000, seed: seed ^ 0x5A3B_1E5E_ED00_0001)
    let shown = Array(test.values.prefix(2000 * d))
    try DensityPlot.document([
      DensityPlot.scatter(
        shown, dimension: d, lower: lower, upper: upper, x0: DensityPlot.x(0),
        title: "\(test.name): test data", colour: "black"),
      DensityPlot.scatter(
        samples, dimension: d, lower: lower, upper: upper, x0: DensityPlot.x(1),
        title: "cnf samples, epoch \(epoch)", colour: "#d62728"),
    ]).write(to: folder.appendingPathComponent("samples.svg"), atomically: true, encoding: .utf8)
    guard d == 2 else { return }
    let n = 60
    let density = try logDensityGrid(lower: lower, upper: upper, n: n).map { exp($0) }
    var histogram = [Double](repeating: 0, count: n * n)
    for k in 0..<test.count {
      let p = test.row(k)
      let i = Int((p[p.startIndex] - lower) / (upper - lower) * Double(n))
      let j = Int((p[p.startIndex + 1] - lower) / (upper - lower) * Double(n))
      if (0..<n).contains(i), (0..<n).contains(j) { histogram[j * n + i] += 1 }
    }
    try DensityPlot.document([
      DensityPlot.heatMap(
        histogram, n: n, x0: DensityPlot.x(0), title: "\(test.name): test data histogram"),
      DensityPlot.heatMap(
        density, n: n, x0: DensityPlot.x(1), title: "cnf density p(x), epoch \(epoch)"),
    ]).write(to: folder.appendingPathComponent("density.svg"), atomically: true, encoding: .utf8)
  }
}
