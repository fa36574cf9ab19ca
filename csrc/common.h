// Shared argument checks and layout selection for the squeezetime operators (CPU and CUDA).
#pragma once
#include <ATen/ATen.h>

#include <vector>

// Hidden, whatever flags build this header (setup.py also passes -fvisibility=hidden): _C and _C_cuda both
// compile these inline helpers, and a default-visibility copy in one module could stand in for the other's.
#pragma GCC visibility push(hidden)
namespace squeezetime {

inline void check_squeeze_time_args(const at::Tensor& frames, c10::ArrayRef<double> mean,
                                    c10::ArrayRef<double> std) {
  TORCH_CHECK(frames.scalar_type() == at::kByte,
              "squeezetime::squeeze_time: frames must be uint8 RGB, got ", frames.scalar_type());
  TORCH_CHECK(frames.dim() == 5 && frames.size(4) == 3,
              "squeezetime::squeeze_time: frames must be (N, T, H, W, 3), got ", frames.sizes());
  TORCH_CHECK(mean.size() == 3 && std.size() == 3,
              "squeezetime::squeeze_time: mean and std need 3 values (RGB), got ", mean.size(), " and ",
              std.size());
  for (double s : std) TORCH_CHECK(s != 0.0, "squeezetime::squeeze_time: std must be non-zero");
}

// Checks gate_scale's shapes: x (N, C, H, W), w1 and w2 (C, C), b1 (C,). The dtypes are each backend's rule.
inline void check_gate_scale_shapes(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                                    const at::Tensor& w2) {
  TORCH_CHECK(x.dim() == 4, "squeezetime::gate_scale: x must be (N, C, H, W), got ", x.sizes());
  const int64_t c = x.size(1);
  TORCH_CHECK(w1.dim() == 2 && w1.size(0) == c && w1.size(1) == c && w2.dim() == 2 && w2.size(0) == c &&
                  w2.size(1) == c && b1.dim() == 1 && b1.size(0) == c,
              "squeezetime::gate_scale: w1, w2 must be (C, C) and b1 (C,) with C = ", c);
}

// gate_scale works and writes in x's layout when x is channels-last (and not also contiguous), else in NCHW.
inline bool gate_scale_nhwc(const at::Tensor& x) {
  return x.size(1) > 1 && x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
}

// Checks the ctl_combine arguments and returns the inputs (temporal, short, glo[, residual]).
inline std::vector<at::Tensor> check_ctl_combine_args(const at::Tensor& temporal, const at::Tensor& short_,
                                                      const at::Tensor& glo, const at::Tensor& scale,
                                                      const at::Tensor& shift,
                                                      const c10::optional<at::Tensor>& residual) {
  TORCH_CHECK(temporal.dim() == 4, "squeezetime::ctl_combine: tensors must be (N, C, H, W), got ",
              temporal.sizes());
  std::vector<at::Tensor> ins{temporal, short_, glo};
  if (residual.has_value() && residual->defined()) ins.push_back(*residual);
  const char* names[] = {"temporal", "short", "glo", "residual"};
  for (size_t i = 0; i < ins.size(); ++i) {
    TORCH_CHECK(ins[i].sizes() == temporal.sizes(), "squeezetime::ctl_combine: ", names[i], " has shape ",
                ins[i].sizes(), ", temporal has ", temporal.sizes());
    TORCH_CHECK(ins[i].scalar_type() == temporal.scalar_type(), "squeezetime::ctl_combine: ", names[i],
                " is ", ins[i].scalar_type(), ", temporal is ", temporal.scalar_type());
    TORCH_CHECK(ins[i].device() == temporal.device(), "squeezetime::ctl_combine: ", names[i], " is on ",
                ins[i].device(), ", temporal on ", temporal.device());
  }
  const int64_t c = temporal.size(1);
  for (const at::Tensor* p : {&scale, &shift}) {
    TORCH_CHECK(p->dim() == 1 && p->size(0) == c, "squeezetime::ctl_combine: scale and shift must be (C,) = (",
                c, ",), got ", p->sizes());
    TORCH_CHECK(p->device() == temporal.device(), "squeezetime::ctl_combine: scale/shift on ", p->device(),
                ", temporal on ", temporal.device());
    TORCH_CHECK(p->is_floating_point(), "squeezetime::ctl_combine: scale/shift must be floating point");
  }
  return ins;
}

// Memory layout of ctl_combine's work and output: NHWC (channels contiguous per pixel) or NCHW (width
// contiguous per row). The same rule is in Python (squeezetime/ops/_fake.py) so that the fake kernel
// predicts the output's strides exactly.
inline bool choose_nhwc(const std::vector<at::Tensor>& ins) {
  const at::Tensor& t = ins[0];
  bool all_nhwc = t.size(1) > 1, all_nchw = true;
  for (const auto& x : ins) {
    all_nhwc = all_nhwc && x.stride(1) == 1;
    all_nchw = all_nchw && (x.size(3) == 1 || x.stride(3) == 1);
  }
  if (all_nhwc) return true;
  if (all_nchw) return false;
  return t.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
}

inline at::Tensor empty_output(const at::Tensor& like, bool nhwc) {
  return at::empty(like.sizes(), like.options().memory_format(nhwc ? at::MemoryFormat::ChannelsLast
                                                                   : at::MemoryFormat::Contiguous));
}

}  // namespace squeezetime
#pragma GCC visibility pop
