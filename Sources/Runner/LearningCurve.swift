import DiffEqNet
import Foundation

/// The learning curves as a standalone SVG: training and test loss (left axis) and the task's
/// first fraction metric on the test split, e.g. accuracy (right axis, 0–100%), against the epoch.
struct LearningCurve {
  let history: [EpochMetrics]
  /// The metric on the right axis, if the task has a fraction metric.
  let fraction: TaskMetric?

  init(_ history: [EpochMetrics], metrics: [TaskMetric]) {
    self.history = history
    fraction = metrics.first(where: \.isFraction)
  }

  func svg(width: Double = 640, height: Double = 360) -> String {
    let (left, right, top, bottom) = (60.0, 60.0, 30.0, 40.0)
    let plotW = width - left - right
    let plotH = height - top - bottom
    let epochs = Double(max(1, history.count))
    // A diverged epoch's NaN or infinite loss is left out of the scale and the lines.
    let maxLoss = max(
      1e-9, history.flatMap { [$0.trainLoss, $0.testLoss] }.filter(\.isFinite).max() ?? 1)
    func x(_ e: Int) -> Double {
      left + plotW * (history.count <= 1 ? 0.5 : Double(e - 1) / (epochs - 1))
    }
    func yLoss(_ v: Double) -> Double { top + plotH * (1 - v / maxLoss) }
    func yAcc(_ v: Double) -> Double { top + plotH * (1 - v) }
    func line(_ points: [(Double, Double)], _ color: String, _ label: String) -> String {
      let p = points.filter { $0.0.isFinite && $0.1.isFinite }
        .map { String(format: "%.1f,%.1f", $0.0, $0.1) }.joined(separator: " ")
      return
        "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(p)\"><title>\(label)</title></polyline>"
    }
    var s = """
      <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
      <rect width="100%" height="100%" fill="white"/>
      <rect x="\(left)" y="\(top)" width="\(plotW)" height="\(plotH)" fill="none" stroke="#888"/>
      <text x="\(left)" y="18">loss (left, 0–\(String(format: "%.3g", maxLoss)))\(fraction.map { " and test \($0.name) (right, 0–100%)" } ?? "") by epoch</text>

      """
    for i in 0...4 {
      let f = Double(i) / 4
      let y = top + plotH * (1 - f)
      s += "<line x1=\"\(left)\" x2=\"\(left + plotW)\" y1=\"\(y)\" y2=\"\(y)\" stroke=\"#eee\"/>"
      s +=
        "<text x=\"\(left - 6)\" y=\"\(y + 4)\" text-anchor=\"end\">\(String(format: "%.3g", maxLoss * f))</text>"
      s += "<text x=\"\(left + plotW + 6)\" y=\"\(y + 4)\">\(Int(f * 100))%</text>\n"
    }
    for m in history {
      s +=
        "<text x=\"\(x(m.epoch))\" y=\"\(top + plotH + 16)\" text-anchor=\"middle\">\(m.epoch)</text>"
    }
    s += line(history.map { (x($0.epoch), yLoss($0.trainLoss)) }, "#1f77b4", "train loss") + "\n"
    s += line(history.map { (x($0.epoch), yLoss($0.testLoss)) }, "#ff7f0e", "test loss") + "\n"
    if let fraction {
      let points = history.compactMap { m in m.test(fraction.name).map { (x(m.epoch), yAcc($0)) } }
      s += line(points, "#2ca02c", "test \(fraction.name)") + "\n"
    }
    s += """
      <text x="\(left + 10)" y="\(height - 8)" fill="#1f77b4">train loss</text>
      <text x="\(left + 100)" y="\(height - 8)" fill="#ff7f0e">test loss</text>
      <text x="\(left + 180)" y="\(height - 8)" fill="#2ca02c">\(fraction.map { "test \($0.name)" } ?? "")</text>
      </svg>

      """
    return s
  }
}
