// CPU kernel of squeezetime::ctl_combine: the CTL module's two branches, the batch norm after it, the
// optional residual and ReLU in one pass: y = scale[c] * (temporal + short * sigmoid(glo)) + shift[c].
// Works in NHWC (channels contiguous, the fast layout for oneDNN convolutions) or NCHW, including channel
// slices of larger tensors; float32 and bfloat16 (computed in float32, rounded once).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../common.h"
#include "vec_math.h"

namespace squeezetime {
namespace cpu {

// One contiguous run of `len` elements. kVecAffine: scale/shift vary along the run (NHWC) or are constants.
template <typename T, bool kVecAffine, bool kRes, bool kRelu>
static inline void combine_run(T* __restrict__ out, const T* __restrict__ tp, const T* __restrict__ sp,
                               const T* __restrict__ gp, const T* __restrict__ rp, const float* __restrict__ scale,
                               const float* __restrict__ shift, float sc, float sh, int64_t len) {
  for (int64_t i = 0; i < len; ++i) {
    const float a = kVecAffine ? scale[i] : sc;
    const float b = kVecAffine ? shift[i] : sh;
    float y = a * (load_f(tp + i) + load_f(sp + i) * fast_sigmoid(load_f(gp + i))) + b;
    if (kRes) y += load_f(rp + i);
    if (kRelu) y = y < 0.0f ? 0.0f : y;
    store_f(out + i, y);
  }
}

template <typename T, bool kRes, bool kRelu>
static void combine(const std::vector<at::Tensor>& ins, at::Tensor& out, const float* scale, const float* shift,
                    bool nhwc) {
  const at::Tensor& t0 = ins[0];
  const int64_t n = t0.size(0), c = t0.size(1), h = t0.size(2), w = t0.size(3);
  const T* p[4] = {nullptr, nullptr, nullptr, nullptr};
  int64_t st[4][4] = {};
  for (size_t k = 0; k < ins.size(); ++k) {
    p[k] = reinterpret_cast<const T*>(ins[k].data_ptr());
    for (int d = 0; d < 4; ++d) st[k][d] = ins[k].stride(d);
  }
  T* o = reinterpret_cast<T*>(out.data_ptr());
  int64_t so[4];
  for (int d = 0; d < 4; ++d) so[d] = out.stride(d);
  if (nhwc) {  // runs of c channels, one per pixel; parallel over (n, h)
    at::parallel_for(0, n * h, std::max<int64_t>(1, 32768 / std::max<int64_t>(w * c, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t ni = r / h, hi = r % h;
        for (int64_t x = 0; x < w; ++x) {
          int64_t off[4];
          for (int k = 0; k < 4; ++k) off[k] = ni * st[k][0] + hi * st[k][2] + x * st[k][3];
          combine_run<T, true, kRes, kRelu>(o + ni * so[0] + hi * so[2] + x * so[3], p[0] + off[0], p[1] + off[1],
                                            p[2] + off[2], kRes ? p[3] + off[3] : nullptr, scale, shift, 0.f, 0.f, c);
        }
      }
    });
  } else {  // runs of w pixels, one per (n, c, h) row
    at::parallel_for(0, n * c * h, std::max<int64_t>(1, 32768 / std::max<int64_t>(w, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t ni = r / (c * h), ci = (r / h) % c, hi = r % h;
        int64_t off[4];
        for (int k = 0; k < 4; ++k) off[k] = ni * st[k][0] + ci * st[k][1] + hi * st[k][2];
        combine_run<T, false, kRes, kRelu>(o + ni * so[0] + ci * so[1] + hi * so[2], p[0] + off[0], p[1] + off[1],
                                           p[2] + off[2], kRes ? p[3] + off[3] : nullptr, nullptr, nullptr,
                                           scale[ci], shift[ci], w);
      }
    });
  }
}

template <typename T>
static void dispatch_flags(const std::vector<at::Tensor>& ins, at::Tensor& out, const float* scale,
                           const float* shift, bool nhwc, bool relu) {
  const bool res = ins.size() == 4;
  if (res && relu) combine<T, true, true>(ins, out, scale, shift, nhwc);
  else if (res) combine<T, true, false>(ins, out, scale, shift, nhwc);
  else if (relu) combine<T, false, true>(ins, out, scale, shift, nhwc);
  else combine<T, false, false>(ins, out, scale, shift, nhwc);
}

at::Tensor ctl_combine_cpu(const at::Tensor& temporal, const at::Tensor& short_, const at::Tensor& glo,
                           const at::Tensor& scale, const at::Tensor& shift,
                           const c10::optional<at::Tensor>& residual, bool relu) {
  std::vector<at::Tensor> ins = check_ctl_combine_args(temporal, short_, glo, scale, shift, residual);
  const auto dtype = temporal.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16,
              "squeezetime::ctl_combine: on CPU, tensors must be float32 or bfloat16, got ", dtype);
  const bool nhwc = choose_nhwc(ins);
  // Tensors whose inner dimension is not contiguous in the chosen layout are copied once.
  for (auto& x : ins) {
    if (nhwc && x.stride(1) != 1) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    if (!nhwc && x.size(3) != 1 && x.stride(3) != 1) x = x.contiguous();
  }
  at::Tensor out = empty_output(temporal, nhwc);
  if (out.numel() == 0) return out;
  const at::Tensor a = scale.to(at::kFloat).contiguous(), b = shift.to(at::kFloat).contiguous();
  if (dtype == at::kFloat) {
    dispatch_flags<float>(ins, out, a.data_ptr<float>(), b.data_ptr<float>(), nhwc, relu);
  } else {
    dispatch_flags<uint16_t>(ins, out, a.data_ptr<float>(), b.data_ptr<float>(), nhwc, relu);
  }
  return out;
}

}  // namespace cpu
}  // namespace squeezetime

TORCH_LIBRARY_IMPL(squeezetime, CPU, m) { m.impl("ctl_combine", &squeezetime::cpu::ctl_combine_cpu); }
