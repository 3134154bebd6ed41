import DiffEqNet
import FuzzSupport

// The safetensors reader, whole files and header-only reads alike.
fuzz { bytes in
  let file = try SafeTensorsFile(bytes: bytes, file: "fuzz.safetensors")
  // What parses must serialise and parse back to the same contents (a throw here is a bug too).
  let again = try! SafeTensorsFile(bytes: try! file.serialized(), file: "again")
  precondition(again == file)
}
