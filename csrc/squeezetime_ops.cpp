// The one schema of the `squeezetime` operator library. Kernels live in cpu/ (CPU) and cuda/ (CUDA);
// fake (meta) kernels are registered from Python (squeezetime/ops/_fake.py) so that torch.compile and
// torch.export see through the operators.
#include <torch/library.h>

TORCH_LIBRARY(squeezetime, m) {
  // uint8 RGB frames (N, T, H, W, 3) -> float32 (N, 3*T, H, W), channel c*T + t, (x - mean[c]) / std[c].
  m.def("squeeze_time(Tensor frames, float[] mean, float[] std) -> Tensor");
  // The same into out: float32 (N, 3*T, H, W), or channels-last float32 or bfloat16 (the network's input layout).
  m.def("squeeze_time.out(Tensor frames, float[] mean, float[] std, *, Tensor(a!) out) -> Tensor(a!)");
  // y = scale[c] * (temporal + short * sigmoid(glo)) + shift[c] (+ residual) (then ReLU when relu).
  m.def(
      "ctl_combine(Tensor temporal, Tensor short, Tensor glo, Tensor scale, Tensor shift, "
      "Tensor? residual, bool relu) -> Tensor");
  // The temporal gate of a CTL module applied to its input: x * g[n, c], g = sigmoid(w2 @ relu(w1 @ mean_hw(x) + b1)).
  m.def("gate_scale(Tensor x, Tensor w1, Tensor b1, Tensor w2) -> Tensor");
  // float32 NCHW -> channels-last float32 or bfloat16, one tiled pass (the network's input).
  m.def("to_channels_last(Tensor x, ScalarType dtype) -> Tensor");
  m.def("to_channels_last.out(Tensor x, *, Tensor(a!) out) -> Tensor(a!)");
}
