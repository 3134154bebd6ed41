import DiffEqCore
import DiffEqData
import Foundation

/// An SVG of a latent ODE's work on a few series, one panel each: the truth (black line: the
/// noiseless series when known, else the data), the observed points (filled blue), the held-back
/// points (hollow red), the reconstruction over the observed span (blue line) and the
/// extrapolation beyond it (red line). Two-dimensional series are drawn in their plane (v1, v2),
/// others as v1 against time.
struct LatentODEPlot {
  struct Panel {
    var title: String
    var truth: [[Double]]
    var observed: [[Double]]
    var heldBack: [[Double]]
    var reconstructed: [[Double]]
    var extrapolated: [[Double]]
  }

  var panels: [Panel]

  func svg(title: String) -> String {
    let size = 320.0
    let margin = 24.0
    let top = 30.0
    let width = size * Double(max(1, panels.count))
    var body: [String] = []
    for (p, panel) in panels.enumerated() {
      let all =
        panel.truth + panel.observed + panel.heldBack + panel.reconstructed
        + panel.extrapolated
      let xs = all.map { $0[0] }
      let ys = all.map { $0[1] }
      let (x0, x1) = (xs.min() ?? 0, max(xs.max() ?? 1, (xs.min() ?? 0) + 1e-9))
      let (y0, y1) = (ys.min() ?? 0, max(ys.max() ?? 1, (ys.min() ?? 0) + 1e-9))
      let left = Double(p) * size + margin
      let inner = size - 2 * margin
      func point(_ v: [Double]) -> (String, String) {
        (
          String(format: "%.1f", left + (v[0] - x0) / (x1 - x0) * inner),
          String(format: "%.1f", top + inner - (v[1] - y0) / (y1 - y0) * inner)
        )
      }
      func line(_ v: [[Double]], _ colour: String) -> String {
        let coordinates = v.map { point($0) }.map { "\($0.0),\($0.1)" }.joined(separator: " ")
        return
          "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"1.5\" points=\"\(coordinates)\"/>"
      }
      func dots(_ v: [[Double]], fill: String, stroke: String) -> [String] {
        v.map { point($0) }.map {
          "<circle cx=\"\($0.0)\" cy=\"\($0.1)\" r=\"2.5\" fill=\"\(fill)\" stroke=\"\(stroke)\"/>"
        }
      }
      body.append(
        "<text x=\"\(left)\" y=\"\(top - 4)\" font-family=\"sans-serif\" font-size=\"11\">\(escape(panel.title))</text>"
      )
      body.append(line(panel.truth, "black"))
      body.append(line(panel.reconstructed, "#1f77b4"))
      body.append(line(panel.extrapolated, "#d62728"))
      body += dots(panel.observed, fill: "#1f77b4", stroke: "none")
      body += dots(panel.heldBack, fill: "none", stroke: "#d62728")
    }
    return
      ([
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(size + top))\">",
        "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
        "<text x=\"\(margin)\" y=\"14\" font-family=\"sans-serif\" font-size=\"12\">\(escape(title)) (black: true, dots: observed, circles: held back, blue: reconstructed, red: extrapolated)</text>",
      ] + body + ["</svg>"]).joined(separator: "\n") + "\n"
  }

  private func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
  }
}

extension LatentODETask {
  /// `latent.svg`: the first three test series with their reconstructions and extrapolations
  /// (z₀ = μ), decoded on 200 times over each series' span.
  public func writeArtifacts(to folder: URL, history: [EpochMetrics]) throws {
    let indices = Array(0..<min(3, test.series.count))
    let layout = try layout(indices, in: test)
    latentODE.train(false)
    defer { latentODE.train(true) }
    let (mean, _) = try latentODE.encode(layout.steps)
    let end = layout.times.last ?? 0
    let dense = end > 0 ? (0..<200).map { end * Double($0) / 199 } : [0]
    let decoded = try latentODE.decode(mean, times: dense).toDoubles()  // [T, batch, d]
    let d = test.dimension
    let batch = indices.count
    var panels: [LatentODEPlot.Panel] = []
    for (b, s) in indices.enumerated() {
      let series = test.series[s]
      let t0 = series.times[0]
      let n = observedCount(series.times.count)
      let observedEnd = series.times[n - 1] - t0
      let last = series.times[series.times.count - 1] - t0
      // A plotted point: (v1, v2) for planar series, (t, v1) otherwise.
      func plotted(_ t: Double, _ v: [Double]) -> [Double] { d >= 2 ? [v[0], v[1]] : [t, v[0]] }
      let trajectory = dense.indices.map { k in
        (dense[k], Array(decoded[((k * batch + b) * d)..<((k * batch + b) * d + d)]))
      }
      let truthSeries = truth?.series.first { $0.id == series.id } ?? series
      panels.append(
        LatentODEPlot.Panel(
          title: "series \(series.id)",
          truth: zip(truthSeries.times, truthSeries.values).map { plotted($0 - t0, $1) },
          observed: (0..<n).map { plotted(series.times[$0] - t0, series.values[$0]) },
          heldBack: (n..<series.times.count).map {
            plotted(series.times[$0] - t0, series.values[$0])
          },
          reconstructed: trajectory.filter { $0.0 <= observedEnd + 1e-12 }.map { plotted($0, $1) },
          extrapolated: trajectory.filter { $0.0 >= observedEnd - 1e-12 && $0.0 <= last + 1e-12 }
            .map { plotted($0, $1) }))
    }
    try LatentODEPlot(panels: panels)
      .svg(title: "latent-ode on \(test.name), epoch \(history.count)")
      .write(to: folder.appendingPathComponent("latent.svg"), atomically: true, encoding: .utf8)
  }
}
