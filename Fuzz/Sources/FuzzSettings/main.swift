import DiffEqNet
import Foundation
import FuzzSupport

// Run settings as JSON (a --config file, a checkpoint's "config"), decoded and validated, and what
// validates must build its model configuration and write back the same settings.
fuzz { bytes in
  let c = try JSONDecoder().decode(TrainingConfiguration.self, from: Data(bytes))
  try c.validate()
  _ = c.modelConfiguration(channels: 1, classes: 10)
  let again = try! JSONDecoder().decode(
    TrainingConfiguration.self, from: try! JSONEncoder().encode(c))
  precondition(again == c)
}
