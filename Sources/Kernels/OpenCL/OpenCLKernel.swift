/// A kernel of the built-in programs (`kernels/*.cl`).
///
/// A launch names its kernel by this value, and the backend finds the `cl_kernel` by indexing a
/// table built when the program is compiled: no string is hashed or compared per launch. The
/// kernel's name in its `.cl` file is the case name in snake case (`unaryGrad` is `unary_grad`);
/// `KernelSourcesTests` checks that every case is found in its program and that every kernel
/// of the sources has a case.
package enum OpenCLKernel: Int, CaseIterable {
  // elementwise.cl
  case fill, unary, unaryGrad, affine, binaryFlat, binaryBroadcast, dropoutMask
  // layout.cl
  case permute, copyBlocks, pack
  // reduce.cl
  case reduceRows, reduceRowParts, reduceCols
  // gemm.cl
  case gemm, convForward, convBackwardData, convBackwardWeights
  // conv.cl
  case im2col, col2im, avgPool, avgPoolGrad
  // norm.cl
  case groupNorm, groupNormGradInput, groupNormGradParams
  case softmaxCERows, softmaxCEWorkGroup, softmaxCEGrad
  case batchNormTrain, batchNormApply, batchNormGrad
  // optim.cl
  case sgd, adam, rmsprop
  // solver.cl
  case linearCombination, scaledErrorSquaredSum, lmUpdate, lmUpdateGrad

  /// The program that defines the kernel.
  package var program: ProgramName {
    switch self {
    case .fill, .unary, .unaryGrad, .affine, .binaryFlat, .binaryBroadcast, .dropoutMask:
      return .elementwise
    case .permute, .copyBlocks, .pack: return .layout
    case .reduceRows, .reduceRowParts, .reduceCols: return .reduce
    case .gemm, .convForward, .convBackwardData, .convBackwardWeights: return .gemm
    case .im2col, .col2im, .avgPool, .avgPoolGrad: return .conv
    case .groupNorm, .groupNormGradInput, .groupNormGradParams, .softmaxCERows,
      .softmaxCEWorkGroup, .softmaxCEGrad, .batchNormTrain, .batchNormApply, .batchNormGrad:
      return .norm
    case .sgd, .adam, .rmsprop: return .optim
    case .linearCombination, .scaledErrorSquaredSum, .lmUpdate, .lmUpdateGrad: return .solver
    }
  }

  /// The kernel's name in its `.cl` file.
  package var name: String {
    switch self {
    // Abbreviations that the snake-case rule below would split.
    case .softmaxCERows: return "softmax_ce_rows"
    case .softmaxCEWorkGroup: return "softmax_ce_wg"
    case .softmaxCEGrad: return "softmax_ce_grad"
    case .im2col: return "im2col"
    case .col2im: return "col2im"
    default:
      var out = ""
      for c in String(describing: self) {
        if c.isUppercase {
          out += "_" + c.lowercased()
        } else {
          out.append(c)
        }
      }
      return out
    }
  }

  /// The kernels of `program`, in table order.
  package static func of(_ program: ProgramName) -> [OpenCLKernel] {
    allCases.filter { $0.program == program }
  }
}
