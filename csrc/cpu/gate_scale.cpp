// CPU kernel of squeezetime::gate_scale: the temporal gate of a CTL module and its application in one call,
// xg = x * g[n, c] with g = sigmoid(w2 @ relu(w1 @ mean_hw(x[n]) + b1)) (the gate's first 1x1 conv with its
// batch norm folded into w1, b1). Replaces six small ATen calls (mean, addmm, relu, mm, sigmoid, mul) per CTL
// module. NHWC (channels-last) or NCHW; float32 and bfloat16 (gate computed in float32, xg rounded once).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common.h"
#include "vec_math.h"

namespace squeezetime {
namespace cpu {

// Dot product with 16 independent partial sums: vectorisable without reassociating a single float sum
// (which the compiler may not do under strict IEEE semantics: one scalar chain ran at ~4 GFLOP/s).
static inline float dot(const float* __restrict__ a, const float* __restrict__ b, int64_t len) {
  float part[16] = {0.f};
  int64_t k = 0;
  for (; k + 16 <= len; k += 16)
    for (int j = 0; j < 16; ++j) part[j] += a[k + j] * b[k + j];
  float acc = 0.f;
  for (; k < len; ++k) acc += a[k] * b[k];
  for (int j = 0; j < 16; ++j) acc += part[j];
  return acc;
}

template <typename T>
static void gate_scale_impl(const at::Tensor& x, const float* w1, const float* b1, const float* w2, at::Tensor& out,
                            bool nhwc) {
  const int64_t n = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);
  const T* xp = reinterpret_cast<const T*>(x.data_ptr());
  T* op = reinterpret_cast<T*>(out.data_ptr());
  std::vector<float> mean(n * c), hid(n * c), g(n * c);
  // 1. per-(n, c) mean over H*W
  if (nhwc) {
    // parallel over channel blocks; each block walks all pixels (contiguous runs of its channels)
    const int64_t cb = 16;
    const int64_t nblk = (c + cb - 1) / cb;
    at::parallel_for(0, n * nblk, 1, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t ni = r / nblk, c0 = (r % nblk) * cb, c1 = std::min(c, c0 + cb);
        float acc[16] = {0.f};
        const T* base = xp + ni * hw * c;
        for (int64_t p = 0; p < hw; ++p) {
          const T* row = base + p * c;
          for (int64_t k = c0; k < c1; ++k) acc[k - c0] += load_f(row + k);
        }
        for (int64_t k = c0; k < c1; ++k) mean[ni * c + k] = acc[k - c0] / static_cast<float>(hw);
      }
    });
  } else {
    at::parallel_for(0, n * c, 1, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const T* row = xp + r * hw;
        float acc = 0.f;
        for (int64_t p = 0; p < hw; ++p) acc += load_f(row + p);
        mean[r] = acc / static_cast<float>(hw);
      }
    });
  }
  // 2. hid = relu(w1 @ mean + b1); g = sigmoid(w2 @ hid): rows in parallel, ~64K multiply-adds per task at
  // least (a small gate runs inline: waking the thread team costs more than the work)
  const int64_t grain = std::max<int64_t>(16, 65536 / std::max<int64_t>(c, 1));
  at::parallel_for(0, n * c, grain, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t ni = r / c, o = r % c;
      const float acc = dot(w1 + o * c, mean.data() + ni * c, c) + b1[o];
      hid[r] = acc > 0.f ? acc : 0.f;
    }
  });
  at::parallel_for(0, n * c, grain, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t ni = r / c, o = r % c;
      g[r] = fast_sigmoid(dot(w2 + o * c, hid.data() + ni * c, c));
    }
  });
  // 3. xg = x * g
  if (nhwc) {
    at::parallel_for(0, n * hw, std::max<int64_t>(1, 16384 / std::max<int64_t>(c, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const float* gr = g.data() + (r / hw) * c;
        const T* src = xp + r * c;
        T* dst = op + r * c;
        for (int64_t k = 0; k < c; ++k) store_f(dst + k, load_f(src + k) * gr[k]);
      }
    });
  } else {
    at::parallel_for(0, n * c, std::max<int64_t>(1, 16384 / std::max<int64_t>(hw, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const float gv = g[r];
        const T* src = xp + r * hw;
        T* dst = op + r * hw;
        for (int64_t p = 0; p < hw; ++p) store_f(dst + p, load_f(src + p) * gv);
      }
    });
  }
}

at::Tensor gate_scale_cpu(const at::Tensor& x_in, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2) {
  check_gate_scale_shapes(x_in, w1, b1, w2);
  const auto dtype = x_in.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16,
              "squeezetime::gate_scale: on CPU, x must be float32 or bfloat16, got ", dtype);
  const bool nhwc = gate_scale_nhwc(x_in);
  const at::Tensor x = nhwc ? x_in : x_in.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options().memory_format(nhwc ? at::MemoryFormat::ChannelsLast
                                                                      : at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const at::Tensor a = w1.to(at::kFloat).contiguous(), bb = b1.to(at::kFloat).contiguous(),
                   cc = w2.to(at::kFloat).contiguous();
  if (dtype == at::kFloat) {
    gate_scale_impl<float>(x, a.data_ptr<float>(), bb.data_ptr<float>(), cc.data_ptr<float>(), out, nhwc);
  } else {
    gate_scale_impl<uint16_t>(x, a.data_ptr<float>(), bb.data_ptr<float>(), cc.data_ptr<float>(), out, nhwc);
  }
  return out;
}

}  // namespace cpu
}  // namespace squeezetime

TORCH_LIBRARY_IMPL(squeezetime, CPU, m) { m.impl("gate_scale", &squeezetime::cpu::gate_scale_cpu); }
