import DiffEqData
import Foundation

/// An SVG plot of a series' first value against time, with forecasts drawn over it: the run
/// folder's picture of true against predicted.
struct ForecastPlot {
  var truth: [(t: Double, v: Double)]
  var forecasts: [[(t: Double, v: Double)]]

  func svg(title: String) -> String {
    let width = 720.0
    let height = 300.0
    let margin = 40.0
    let points = truth + forecasts.flatMap { $0 }
    let t0 = points.map(\.t).min() ?? 0
    let t1 = max(points.map(\.t).max() ?? 1, t0 + 1e-9)
    let v0 = points.map(\.v).min() ?? 0
    let v1 = max(points.map(\.v).max() ?? 1, v0 + 1e-9)
    func x(_ t: Double) -> String {
      String(format: "%.1f", margin + (t - t0) / (t1 - t0) * (width - 2 * margin))
    }
    func y(_ v: Double) -> String {
      String(format: "%.1f", height - margin - (v - v0) / (v1 - v0) * (height - 2 * margin))
    }
    func line(_ p: [(t: Double, v: Double)], _ colour: String) -> String {
      let coordinates = p.map { "\(x($0.t)),\(y($0.v))" }.joined(separator: " ")
      return
        "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"1.5\" points=\"\(coordinates)\"/>"
    }
    let escaped = title.replacingOccurrences(of: "&", with: "&amp;")
      .replacingOccurrences(of: "<", with: "&lt;")
    return
      ([
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\">",
        "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
        "<text x=\"\(margin)\" y=\"20\" font-family=\"sans-serif\" font-size=\"13\">\(escaped) (black: true, red: forecasts)</text>",
        line(truth, "black"),
      ] + forecasts.map { line($0, "#d62728") } + ["</svg>"]).joined(separator: "\n") + "\n"
  }
}

extension ForecastTask {
  /// `forecast.svg`: the first test series' first value with the model's forecasts from every
  /// `horizon`-th window.
  public func writeArtifacts(to folder: URL, history: [EpochMetrics]) throws {
    guard let group = testGroups.first(where: { $0.contains { $0.series == 0 } }) else { return }
    let windows = group.filter { $0.series == 0 }
    let chosen = stride(from: 0, to: windows.count, by: horizon).map { windows[$0] }
    let series = test.series[0]
    var forecasts: [[(t: Double, v: Double)]] = []
    forecaster.train(false)
    defer { forecaster.train(true) }
    for start in stride(from: 0, to: chosen.count, by: batchSize) {
      let batch = Array(chosen[start..<min(start + batchSize, chosen.count)])
      let (predicted, _) = try forecast(batch, in: test)
      let values = try predicted.toDoubles()  // [horizon + 1, batch, d]
      let d = test.dimension
      for (b, w) in batch.enumerated() {
        forecasts.append(
          (0...horizon).map { k in
            (series.times[w.index + k], values[(k * batch.count + b) * d])
          })
      }
    }
    let plot = ForecastPlot(
      truth: zip(series.times, series.values).map { ($0, $1[0]) }, forecasts: forecasts)
    let epoch = history.count
    try plot.svg(title: "\(modelName) on \(test.name), series \(series.id), epoch \(epoch)")
      .write(to: folder.appendingPathComponent("forecast.svg"), atomically: true, encoding: .utf8)
  }

  /// CSV lines `series,origin,time,true_v1..,predicted_v1..` for every test forecast, and the
  /// test MSE.
  public func forecastTable() throws -> (csv: String, mse: Double) {
    let (test, horizon) = (test, horizon)
    let d = test.dimension
    let header =
      ["series", "origin", "time"] + (1...d).map { "true_v\($0)" }
      + (1...d).map { "predicted_v\($0)" }
    var lines = [header.joined(separator: ",")]
    let mse = try testMSE { batch, values in  // values: [horizon, batch, d]
      for (b, w) in batch.enumerated() {
        let s = test.series[w.series]
        for k in 1...horizon {
          let predicted = (0..<d).map { values[((k - 1) * batch.count + b) * d + $0] }
          let row =
            [s.id, "\(s.times[w.index])", "\(s.times[w.index + k])"]
            + s.values[w.index + k].map { "\($0)" } + predicted.map { "\($0)" }
          lines.append(row.joined(separator: ","))
        }
      }
    }
    return (lines.joined(separator: "\n") + "\n", mse)
  }
}
