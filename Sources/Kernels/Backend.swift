/// The primitive operations every compute backend implements.
///
/// Buffers are flat and contiguous; shapes arrive as small descriptor structs. Each operation
/// writes every element of its output (outputs are never read first unless stated), so callers may
/// pass freshly allocated, uninitialised buffers. Operations may run asynchronously: results are
/// guaranteed visible only to later operations on the same backend and to `read`. Element-wise
/// operations (`unary`, `unaryGrad`, `affine`, `binary`) may run in place: an output may be an
/// input that is read at the output's own index.
public protocol Backend: AnyObject, Sendable {
  /// A human-readable description, e.g. `cpu (OpenBLAS SkylakeX, 2 threads)` or
  /// `opencl:0 NVIDIA H100`.
  var name: String { get }
  /// The allocator whose byte counts measure this backend's memory use.
  var pool: BufferPool { get }
  /// Whether buffers of `dtype` can be computed on.
  func supports(_ dtype: DType) -> Bool
  /// The device work and transfers asked for so far (all zero for a backend that computes in
  /// host memory).
  var traffic: DeviceTraffic { get }

  /// Copies host bytes into `buffer` (synchronous with respect to the host memory).
  func write(_ bytes: UnsafeRawBufferPointer, to buffer: DeviceBuffer) throws
  /// Copies `bytes.count` bytes of `buffer` to the host, waiting for pending work.
  func read(_ buffer: DeviceBuffer, into bytes: UnsafeMutableRawBufferPointer) throws
  /// Waits until all enqueued work has finished.
  func synchronize() throws

  /// y[i] = value
  func fill(_ y: DeviceBuffer, value: Double, count: Int, dtype: DType) throws
  /// y[i] = f(x[i])
  func unary(_ op: UnaryOp, _ x: DeviceBuffer, _ y: DeviceBuffer, count: Int, dtype: DType) throws
  /// dx[i] = dy[i] · f'(x[i])
  func unaryGrad(
    _ op: UnaryOp, x: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, count: Int, dtype: DType
  ) throws
  /// y[i] = scale · x[i] + shift
  func affine(
    _ x: DeviceBuffer, _ y: DeviceBuffer, scale: Double, shift: Double, count: Int, dtype: DType
  ) throws
  /// y[i] = Σ_k coefficients[k] · xs[k][i]: one launch for a Runge–Kutta stage input
  /// y0 + h Σ a_ij k_j, a step's solution, or a multistep update. `y` may not alias an input.
  /// Requires xs.count == coefficients.count ≥ 1; terms are summed in order in the element type,
  /// each as c·x[i] in IEEE arithmetic (a zero coefficient on an inf or NaN input yields NaN).
  func linearCombination(
    _ xs: [DeviceBuffer], coefficients: [Double], into y: DeviceBuffer, count: Int, dtype: DType)
    throws
  /// Σ_i (err[i] / (atol + rtol · max(|y0[i]|, |y1[i]|)))², the squared numerator of an adaptive
  /// solver's RMS error norm, returned to the host (the one read per step). Partial sums are
  /// combined in Double in a backend-specific order (results agree to rounding); a NaN in
  /// error, y0 or y1 yields NaN, so a step that produced NaN is rejected, never accepted.
  func scaledErrorSquaredSum(
    error: DeviceBuffer, y0: DeviceBuffer, y1: DeviceBuffer, atol: Double, rtol: Double,
    count: Int, dtype: DType
  ) throws -> Double
  /// `scaledErrorSquaredSum` of each term, read back together: one host synchronisation for a
  /// norm over several components, or for several norms taken at once.
  func scaledErrorSquaredSums(
    _ terms: [ScaledErrorTerm], atol: Double, rtol: Double, dtype: DType
  ) throws -> [Double]
  /// out[i] = a[i'] ∘ b[i''] with numpy broadcasting described by `layout`.
  func binary(
    _ op: BinaryOp, _ a: DeviceBuffer, _ b: DeviceBuffer, _ out: DeviceBuffer,
    layout: BroadcastLayout, dtype: DType) throws
  /// y[o, i] = scale · Σ_j x[o, j, i] for x viewed as [outer, n, inner].
  func reduceSum(
    _ x: DeviceBuffer, _ y: DeviceBuffer, shape: ReductionShape, scale: Double, dtype: DType)
    throws
  /// C = alpha · op(A) · op(B) + beta · C, row-major, optionally batched with strides; with
  /// beta = 0, C is never read (it may hold NaN).
  func gemm(_ a: DeviceBuffer, _ b: DeviceBuffer, _ c: DeviceBuffer, _ p: GEMMShape, dtype: DType)
    throws
  /// y = x permuted: y has shape shape[perm[0]], …, shape[perm[3]].
  func permute(_ x: DeviceBuffer, _ y: DeviceBuffer, _ p: PermuteShape, dtype: DType) throws
  /// Copies `blocks` runs of `length` elements between strided positions (slice and concat).
  func copyBlocks(_ x: DeviceBuffer, _ y: DeviceBuffer, _ p: BlockCopy, dtype: DType) throws
  /// The alignment in bytes that the start of a view must have (see `view`).
  var viewAlignment: Int { get }
  /// A buffer that aliases elements `offset ..< offset + count` of `buffer`: what is written
  /// through either is read through the other, and the view keeps `buffer` alive. `buffer` must
  /// not itself be a view, and `offset · dtype.size` must be a multiple of `viewAlignment`.
  func view(of buffer: DeviceBuffer, offset: Int, count: Int, dtype: DType) throws -> DeviceBuffer
  /// y[offsets[k] + i] = xs[k][i] for i < counts[k]: several buffers gathered into one, such as
  /// the gradients of parameters stored as views of one flat buffer. Unlike other operations it
  /// writes only those ranges; the rest of y keeps its values. `offsets` ascend and the ranges do
  /// not overlap.
  func pack(
    _ xs: [DeviceBuffer], counts: [Int], offsets: [Int], into y: DeviceBuffer, dtype: DType)
    throws
  /// cols[(c·kh + i)·kw + j, (n·Ho + oh)·Wo + ow] = x[n, c, oh·s − p + i, ow·s − p + j] (0 outside).
  func im2col(_ x: DeviceBuffer, _ cols: DeviceBuffer, _ g: ConvGeometry, dtype: DType) throws
  /// The adjoint of `im2col`: x (overwritten) = Σ of the cols entries that read each element.
  func col2im(_ cols: DeviceBuffer, _ x: DeviceBuffer, _ g: ConvGeometry, dtype: DType) throws
  /// y [N, O, Ho, Wo] = conv(x [N, C, H, W], w [O, C, kh, kw]) + bias[o] (cross-correlation, zero
  /// padding; no bias term when `bias` is nil).
  func conv2d(
    _ x: DeviceBuffer, _ w: DeviceBuffer, bias: DeviceBuffer?, _ y: DeviceBuffer,
    outChannels: Int, _ g: ConvGeometry, dtype: DType) throws
  /// dx [N, C, H, W] (overwritten) = the adjoint of `conv2d` in x applied to dy.
  func conv2dBackwardData(
    _ dy: DeviceBuffer, _ w: DeviceBuffer, _ dx: DeviceBuffer,
    outChannels: Int, _ g: ConvGeometry, dtype: DType) throws
  /// dw [O, C, kh, kw] (overwritten) = Σ_n dy_n · im2col(x_n)ᵀ, and dbias [O] (overwritten,
  /// when given) = Σ_{n, h, w} dy[n, o, h, w].
  func conv2dBackwardWeights(
    _ dy: DeviceBuffer, _ x: DeviceBuffer, _ dw: DeviceBuffer, bias dbias: DeviceBuffer?,
    outChannels: Int, _ g: ConvGeometry, dtype: DType) throws
  /// `conv2d` of the input [t·1, x]: a constant channel t first (zero in the padding, as if the
  /// concatenated tensor were padded), then x [N, C − 1, H, W]; `g.c` = C counts the time
  /// channel and w is [O, C, kh, kw]. torchdiffeq's ConcatConv2d without the concatenation.
  func timeConcatConv2d(
    _ x: DeviceBuffer, time: Double, _ w: DeviceBuffer, bias: DeviceBuffer?, _ y: DeviceBuffer,
    outChannels: Int, _ g: ConvGeometry, dtype: DType) throws
  /// dx [N, C − 1, H, W] (overwritten): the adjoint of `timeConcatConv2d` in x (the time channel
  /// is a constant and gets none).
  func timeConcatConv2dBackwardData(
    _ dy: DeviceBuffer, _ w: DeviceBuffer, _ dx: DeviceBuffer, outChannels: Int,
    _ g: ConvGeometry, dtype: DType) throws
  /// dw [O, C, kh, kw] and dbias (overwritten): `conv2dBackwardWeights` of the input [t·1, x].
  func timeConcatConv2dBackwardWeights(
    _ dy: DeviceBuffer, _ x: DeviceBuffer, time: Double, _ dw: DeviceBuffer,
    bias dbias: DeviceBuffer?, outChannels: Int, _ g: ConvGeometry, dtype: DType) throws
  /// The grouped convolution: x's C channels and the O outputs split into `groups` equal
  /// groups, output group j convolved with input group j only, w [O, C/groups, kh, kw]:
  /// y[n, o, i, j] = b[o] + Σ_{c in o's group} x[n, c, ·] ⋆ w[o, c − c₀(o), ·]. `g.c` is C.
  func groupedConv2d(
    _ x: DeviceBuffer, _ w: DeviceBuffer, bias: DeviceBuffer?, _ y: DeviceBuffer,
    outChannels: Int, groups: Int, _ g: ConvGeometry, dtype: DType) throws
  /// dx [N, C, H, W] (overwritten) = the adjoint of `groupedConv2d` in x applied to dy.
  func groupedConv2dBackwardData(
    _ dy: DeviceBuffer, _ w: DeviceBuffer, _ dx: DeviceBuffer, outChannels: Int, groups: Int,
    _ g: ConvGeometry, dtype: DType) throws
  /// dw [O, C/groups, kh, kw] (overwritten) = the adjoint of `groupedConv2d` in w applied to dy.
  func groupedConv2dBackwardWeights(
    _ dy: DeviceBuffer, _ x: DeviceBuffer, _ dw: DeviceBuffer, outChannels: Int, groups: Int,
    _ g: ConvGeometry, dtype: DType) throws
  /// Group normalisation of x [N, C, HW]: y = (x − μ_ng)·rstd_ng·γ_c + β_c, saving μ and rstd [N·G].
  func groupNorm(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, y: DeviceBuffer,
    mean: DeviceBuffer, rstd: DeviceBuffer, _ s: GroupNormShape, dtype: DType) throws
  /// y = max(0, groupNorm(x)): the norm and the ReLU that follows it in one pass where the
  /// backend can fuse them.
  func groupNormReLU(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, y: DeviceBuffer,
    mean: DeviceBuffer, rstd: DeviceBuffer, _ s: GroupNormShape, dtype: DType) throws
  /// Gradients of `groupNormReLU` given its output y: `groupNormGrad` of dy·[y > 0].
  func groupNormReLUGrad(
    x: DeviceBuffer, gamma: DeviceBuffer, mean: DeviceBuffer, rstd: DeviceBuffer,
    y: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, dgamma: DeviceBuffer,
    dbeta: DeviceBuffer, _ s: GroupNormShape, dtype: DType) throws
  /// Gradients of `groupNorm`: dx, and dgamma, dbeta [C] (overwritten).
  func groupNormGrad(
    x: DeviceBuffer, gamma: DeviceBuffer, mean: DeviceBuffer, rstd: DeviceBuffer,
    dy: DeviceBuffer, dx: DeviceBuffer, dgamma: DeviceBuffer, dbeta: DeviceBuffer,
    _ s: GroupNormShape, dtype: DType) throws
  /// Batch normalisation of x [N, C, HW] with the batch's statistics: per channel, μ_c and the
  /// biased σ²_c over the M = N·HW values, y = (x − μ_c)/√(σ²_c + eps)·γ_c + β_c, and μ, σ² [C]
  /// written to `mean` and `variance`. With `running`, also its new running averages
  /// (1 − m)·old + m·new, of μ and of the unbiased σ²·M/(M − 1) (PyTorch's convention).
  func batchNorm(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, y: DeviceBuffer,
    mean: DeviceBuffer, variance: DeviceBuffer, running: BatchNormRunning?,
    _ s: BatchNormShape, dtype: DType) throws
  /// y = max(0, batchNorm(x)) with the batch's statistics (and `running`'s averages, as
  /// `batchNorm`): the norm and the ReLU that follows it in one pass where the backend can fuse
  /// them.
  func batchNormReLU(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, y: DeviceBuffer,
    mean: DeviceBuffer, variance: DeviceBuffer, running: BatchNormRunning?,
    _ s: BatchNormShape, dtype: DType) throws
  /// Gradients of `batchNormReLU` given its output y: `batchNormGrad` (batch statistics) of
  /// dy·[y > 0].
  func batchNormReLUGrad(
    x: DeviceBuffer, gamma: DeviceBuffer, mean: DeviceBuffer, variance: DeviceBuffer,
    y: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, dgamma: DeviceBuffer,
    dbeta: DeviceBuffer, _ s: BatchNormShape, dtype: DType) throws
  /// Batch normalisation with given statistics (evaluation mode):
  /// y = (x − mean_c)/√(variance_c + eps)·γ_c + β_c.
  func batchNormInference(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, mean: DeviceBuffer,
    variance: DeviceBuffer, y: DeviceBuffer, _ s: BatchNormShape, dtype: DType) throws
  /// Gradients of `batchNorm` (`batchStatistics`: mean and variance are the batch's, functions
  /// of x) or of `batchNormInference` (constants): with x̂ = (x − μ)·rstd, rstd = 1/√(σ² + eps),
  /// dβ_c = Σ dy, dγ_c = Σ dy·x̂ (overwritten), and dx = γ·rstd·(dy − (dβ + x̂·dγ)/M) for batch
  /// statistics, dx = γ·rstd·dy otherwise.
  func batchNormGrad(
    x: DeviceBuffer, gamma: DeviceBuffer, mean: DeviceBuffer, variance: DeviceBuffer,
    dy: DeviceBuffer, dx: DeviceBuffer, dgamma: DeviceBuffer, dbeta: DeviceBuffer,
    batchStatistics: Bool, _ s: BatchNormShape, dtype: DType) throws
  /// The linear two-step update of an LM-ResNet block, with k = k[0] read on the device:
  /// y[i] = (1 − k)·u[i] + k·previous[i] + scale·branch[i] (no branch term when it is nil).
  func lmUpdate(
    u: DeviceBuffer, previous: DeviceBuffer, branch: DeviceBuffer?, k: DeviceBuffer,
    scale: Double, y: DeviceBuffer, count: Int, dtype: DType) throws
  /// The adjoint of `lmUpdate` for the cotangent dy: du = (1 − k)·dy, dPrevious = k·dy,
  /// dBranch = scale·dy and dk[0] = Σ dy·(previous − u), each written only when its buffer is
  /// given.
  func lmUpdateGrad(
    u: DeviceBuffer, previous: DeviceBuffer, k: DeviceBuffer, dy: DeviceBuffer,
    du: DeviceBuffer?, dPrevious: DeviceBuffer?, dBranch: DeviceBuffer?, dk: DeviceBuffer?,
    scale: Double, count: Int, dtype: DType) throws
  /// Average pooling over k×k windows with stride s, no padding, NCHW.
  func avgPool(_ x: DeviceBuffer, _ y: DeviceBuffer, _ g: PoolGeometry, dtype: DType) throws
  /// The adjoint of `avgPool` (dx overwritten).
  func avgPoolGrad(_ dy: DeviceBuffer, _ dx: DeviceBuffer, _ g: PoolGeometry, dtype: DType) throws
  /// Row-wise softmax of logits [rows, classes] into probs, and losses[r] = −log probs[r, label[r]]
  /// where labels holds class indices as (exactly representable) floating-point values.
  func softmaxCrossEntropy(
    logits: DeviceBuffer, labels: DeviceBuffer, probs: DeviceBuffer, losses: DeviceBuffer,
    rows: Int, classes: Int, dtype: DType) throws
  /// dlogits[r, j] = (probs[r, j] − [j = labels[r]]) · cotangent[0] / rows: the gradient of the
  /// mean of `softmaxCrossEntropy`'s losses, for a cotangent held in a one-element buffer, so
  /// neither the labels nor the cotangent travel to the host.
  func softmaxCrossEntropyGrad(
    probs: DeviceBuffer, labels: DeviceBuffer, cotangent: DeviceBuffer, dlogits: DeviceBuffer,
    rows: Int, classes: Int, dtype: DType) throws
  /// y[i] = keep_i / (1 − p), keep_i = hash(seed, i) ≥ p: the same mask on every backend.
  func dropoutMask(_ y: DeviceBuffer, count: Int, p: Double, seed: UInt32, dtype: DType) throws
  /// One optimiser update of `param` in place from `grad`, with state buffers (see `OptimizerStep`).
  func optimizerStep(
    _ step: OptimizerStep, param: DeviceBuffer, grad: DeviceBuffer, state1: DeviceBuffer,
    state2: DeviceBuffer?, count: Int, dtype: DType) throws
}

extension Backend {
  /// A pooled buffer for `count` elements of `dtype`.
  public func allocate(_ count: Int, _ dtype: DType) throws -> DeviceBuffer {
    try pool.buffer(count, dtype)
  }
}

/// Point-wise functions with their derivatives. Conventions at kinks: relu'(0) = abs'(0) = 0;
/// elu uses α = 1.
public enum UnaryOp: Int32, Sendable, CaseIterable {
  case neg, relu, tanh, sigmoid, softplus, elu, exp, log, square, sqrt, abs, reciprocal
}

/// Broadcasting binary functions. `maximum` is IEEE fmax: a NaN operand yields the other
/// operand (NaN only when both are).
public enum BinaryOp: Int32, Sendable, CaseIterable {
  case add, sub, mul, div, maximum
}

/// Index arithmetic for a broadcast binary op over (at most) four dimensions: element
/// (i0, i1, i2, i3) of the output reads a at Σ ik·aStrides[k] and b at Σ ik·bStrides[k]; a
/// broadcast dimension has stride 0.
/// One vector of `Backend.scaledErrorSquaredSums`: the error and the two states that scale it,
/// each of `count` elements.
public struct ScaledErrorTerm {
  public var error: DeviceBuffer
  public var y0: DeviceBuffer
  public var y1: DeviceBuffer
  public var count: Int

  public init(error: DeviceBuffer, y0: DeviceBuffer, y1: DeviceBuffer, count: Int) {
    (self.error, self.y0, self.y1, self.count) = (error, y0, y1, count)
  }
}

public struct BroadcastLayout: Sendable, Equatable {
  // Four lanes rather than arrays: every binary op builds one, and arrays cost three heap
  // allocations per op.
  public var shape: SIMD4<Int>
  public var aStrides: SIMD4<Int>
  public var bStrides: SIMD4<Int>
  public init(shape: SIMD4<Int>, aStrides: SIMD4<Int>, bStrides: SIMD4<Int>) {
    self.shape = shape
    self.aStrides = aStrides
    self.bStrides = bStrides
  }
  /// The same from four-element arrays.
  public init(shape: [Int], aStrides: [Int], bStrides: [Int]) {
    precondition(shape.count == 4 && aStrides.count == 4 && bStrides.count == 4)
    self.init(shape: SIMD4(shape), aStrides: SIMD4(aStrides), bStrides: SIMD4(bStrides))
  }
  public var count: Int { shape[0] * shape[1] * shape[2] * shape[3] }
}

/// x viewed as [outer, n, inner], reduced over the middle axis.
public struct ReductionShape: Sendable, Equatable {
  public var outer: Int, n: Int, inner: Int
  public init(outer: Int, n: Int, inner: Int) {
    self.outer = outer
    self.n = n
    self.inner = inner
  }
}

/// Row-major GEMM: C[m×n] = alpha·op(A)·op(B) + beta·C with op(A) m×k and op(B) k×n, repeated
/// `batch` times with element strides between matrices. Offsets are in elements.
public struct GEMMShape: Sendable, Equatable {
  public var transA = false, transB = false
  public var m: Int, n: Int, k: Int
  public var alpha = 1.0, beta = 0.0
  public var lda: Int, ldb: Int, ldc: Int
  public var batch = 1
  public var strideA = 0, strideB = 0, strideC = 0
  public var offsetA = 0, offsetB = 0, offsetC = 0

  /// Dense matrices with leading dimensions implied by the shapes and transposes.
  public init(
    m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false, alpha: Double = 1,
    beta: Double = 0, batch: Int = 1
  ) {
    self.m = m
    self.n = n
    self.k = k
    self.transA = transA
    self.transB = transB
    self.alpha = alpha
    self.beta = beta
    self.lda = transA ? m : k
    self.ldb = transB ? k : n
    self.ldc = n
    self.batch = batch
    self.strideA = m * k
    self.strideB = k * n
    self.strideC = m * n
  }

  public var flops: Double { 2.0 * Double(m) * Double(n) * Double(k) * Double(batch) }
}

/// A 4-D permutation: output dimension d is input dimension perm[d].
public struct PermuteShape: Sendable, Equatable {
  public var shape: [Int]
  public var perm: [Int]
  public init(shape: [Int], perm: [Int]) {
    precondition(shape.count == 4 && perm.sorted() == [0, 1, 2, 3])
    self.shape = shape
    self.perm = perm
  }
  public var count: Int { shape.reduce(1, *) }
}

/// y[dstOffset + b·dstStride + i] = x[srcOffset + b·srcStride + i] for b < blocks, i < length.
public struct BlockCopy: Sendable, Equatable {
  public var blocks: Int, length: Int
  public var srcOffset: Int, srcStride: Int
  public var dstOffset: Int, dstStride: Int
  public init(
    blocks: Int, length: Int, srcOffset: Int, srcStride: Int, dstOffset: Int, dstStride: Int
  ) {
    self.blocks = blocks
    self.length = length
    self.srcOffset = srcOffset
    self.srcStride = srcStride
    self.dstOffset = dstOffset
    self.dstStride = dstStride
  }
}

/// The geometry of a 2-D convolution over NCHW input with a kh×kw kernel.
public struct ConvGeometry: Sendable, Equatable {
  public var n: Int, c: Int, h: Int, w: Int
  public var kh: Int, kw: Int
  public var stride: Int, pad: Int
  public init(n: Int, c: Int, h: Int, w: Int, kh: Int, kw: Int, stride: Int, pad: Int) {
    self.n = n
    self.c = c
    self.h = h
    self.w = w
    self.kh = kh
    self.kw = kw
    self.stride = stride
    self.pad = pad
  }
  public var outH: Int { (h + 2 * pad - kh) / stride + 1 }
  public var outW: Int { (w + 2 * pad - kw) / stride + 1 }
  /// Rows of the im2col matrix.
  public var patch: Int { c * kh * kw }
  /// Columns of the im2col matrix.
  public var columns: Int { n * outH * outW }
}

/// x [n, c, hw] normalised over groups of c/groups channels.
public struct GroupNormShape: Sendable, Equatable {
  public var n: Int, c: Int, hw: Int, groups: Int
  public var eps: Double
  public init(n: Int, c: Int, hw: Int, groups: Int, eps: Double = 1e-5) {
    precondition(c % groups == 0)
    self.n = n
    self.c = c
    self.hw = hw
    self.groups = groups
    self.eps = eps
  }
  public var count: Int { n * c * hw }
}

/// x [n, c, hw] normalised per channel over the n·hw values of the batch.
public struct BatchNormShape: Sendable, Equatable {
  public var n: Int, c: Int, hw: Int
  public var eps: Double
  public init(n: Int, c: Int, hw: Int, eps: Double = 1e-5) {
    self.n = n
    self.c = c
    self.hw = hw
    self.eps = eps
  }
  public var count: Int { n * c * hw }
  /// The values each channel's statistics are taken over.
  public var perChannel: Int { n * hw }
}

/// Running statistics [C] that a training-mode `batchNorm` reads (`mean`, `variance`) and
/// replaces (`newMean`, `newVariance`, which may not alias them) with momentum `momentum`.
public struct BatchNormRunning {
  public var mean: DeviceBuffer, variance: DeviceBuffer
  public var newMean: DeviceBuffer, newVariance: DeviceBuffer
  public var momentum: Double
  public init(
    mean: DeviceBuffer, variance: DeviceBuffer, newMean: DeviceBuffer, newVariance: DeviceBuffer,
    momentum: Double
  ) {
    self.mean = mean
    self.variance = variance
    self.newMean = newMean
    self.newVariance = newVariance
    self.momentum = momentum
  }
}

/// Average pooling geometry (no padding): windows k×k every `stride` pixels of x [n, c, h, w].
public struct PoolGeometry: Sendable, Equatable {
  public var n: Int, c: Int, h: Int, w: Int, k: Int, stride: Int
  public init(n: Int, c: Int, h: Int, w: Int, k: Int, stride: Int) {
    self.n = n
    self.c = c
    self.h = h
    self.w = w
    self.k = k
    self.stride = stride
  }
  public var outH: Int { (h - k) / stride + 1 }
  public var outW: Int { (w - k) / stride + 1 }
}

/// The arithmetic of one optimiser update, element-wise:
/// - `sgd`: g' = g + wd·p; v = momentum·v + g'; p −= lr·(nesterov ? g' + momentum·v : v).
/// - `adam`: g' = g + wd·p (L2, when not decoupled); m = β1·m + (1−β1)·g'; v = β2·v + (1−β2)·g'²;
///   p −= lr·(m/(1−β1^t)) / (√(v/(1−β2^t)) + ε), and with decoupled (AdamW) p −= lr·wd·p first.
/// - `rmsprop`: v = α·v + (1−α)·g²; p −= lr·g/(√v + ε).
public enum OptimizerStep: Sendable, Equatable {
  case sgd(lr: Double, momentum: Double, nesterov: Bool, weightDecay: Double)
  case adam(
    lr: Double, beta1: Double, beta2: Double, eps: Double, weightDecay: Double, decoupled: Bool,
    step: Int)
  case rmsprop(lr: Double, alpha: Double, eps: Double)
}

/// Errors from backends: device selection, kernel builds, allocation, unsupported types.
public enum BackendError: Error, CustomStringConvertible, Equatable {
  case noOpenCLPlatform
  case noSuchDevice(String)
  case openCL(call: String, code: Int32)
  case kernelBuildFailed(program: String, options: String, log: String)
  case unsupportedType(DType, backend: String)
  case outOfMemory(bytes: Int, device: String)
  /// A backend setting the kernels cannot run with.
  case invalidOption(String)
  /// A buffer whose byte size overflows, or exceeds `BufferPool.maxBytes`.
  case allocationTooLarge(elements: Int, dtype: DType)
  /// Work too large for the OpenCL kernels, which index with 32-bit integers.
  case indexRangeExceeded(kernel: String, reason: String)
  /// A view or packing range that does not fit its buffer or the device's alignment.
  case invalidView(String)

  public var description: String {
    switch self {
    case .noOpenCLPlatform:
      return
        "no OpenCL platform found (install an ICD such as pocl-opencl-icd, or use --device cpu)"
    case .noSuchDevice(let d): return "no such device: \(d)"
    case .openCL(let call, let code): return "OpenCL call \(call) failed with error \(code)"
    case .kernelBuildFailed(let program, let options, let log):
      return "OpenCL program '\(program)' failed to build with options '\(options)':\n\(log)"
    case .unsupportedType(let t, let b): return "\(b) does not support \(t)"
    case .outOfMemory(let n, let d): return "out of memory allocating \(n) bytes on \(d)"
    case .invalidOption(let reason): return "invalid backend option: \(reason)"
    case .allocationTooLarge(let n, let t):
      return "cannot allocate \(n) elements of \(t): more than \(BufferPool.maxBytes) bytes"
    case .indexRangeExceeded(let kernel, let reason):
      return "OpenCL kernel \(kernel): \(reason) exceeds the kernels' 32-bit index range "
        + "(2147483647); use a smaller batch, or --device cpu"
    case .invalidView(let reason): return "invalid buffer view: \(reason)"
    }
  }
}
