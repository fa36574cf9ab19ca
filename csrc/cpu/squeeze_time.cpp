// CPU kernel of squeezetime::squeeze_time: the time-into-channel fold fused with normalisation and the
// NTHWC -> N(CT)HW layout change, one pass over memory, parallel over (n, t, h) rows.
#include <ATen/Parallel.h>
#include <algorithm>
#include <torch/library.h>

#include "../common.h"

namespace squeezetime {
namespace cpu {

// One image row: de-interleave RGB bytes into three stack buffers, then three contiguous (vectorised) loops.
// Arguments by value and restrict pointers, so the compiler neither reloads constants nor checks aliasing.
static void normalize_row(const uint8_t* __restrict__ p, float* __restrict__ q0, float* __restrict__ q1,
                          float* __restrict__ q2, int64_t w, float m0, float m1, float m2, float s0, float s1,
                          float s2) {
  constexpr int64_t kChunk = 512;
  uint8_t a[kChunk], b[kChunk], c[kChunk];
  for (int64_t x0 = 0; x0 < w; x0 += kChunk) {
    const int64_t len = std::min(kChunk, w - x0);
    const uint8_t* pp = p + 3 * x0;
    for (int64_t x = 0; x < len; ++x) {
      a[x] = pp[3 * x];
      b[x] = pp[3 * x + 1];
      c[x] = pp[3 * x + 2];
    }
    for (int64_t x = 0; x < len; ++x) q0[x0 + x] = (static_cast<float>(a[x]) - m0) / s0;
    for (int64_t x = 0; x < len; ++x) q1[x0 + x] = (static_cast<float>(b[x]) - m1) / s1;
    for (int64_t x = 0; x < len; ++x) q2[x0 + x] = (static_cast<float>(c[x]) - m2) / s2;
  }
}

at::Tensor squeeze_time_cpu(const at::Tensor& frames_in, c10::ArrayRef<double> mean, c10::ArrayRef<double> std) {
  check_squeeze_time_args(frames_in, mean, std);
  const at::Tensor frames = frames_in.contiguous();
  const int64_t n = frames.size(0), t = frames.size(1), h = frames.size(2), w = frames.size(3);
  at::Tensor out = at::empty({n, 3 * t, h, w}, frames.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  // float32 arithmetic in the order of normalize_clip: (float(x) - mean) / std, so results are bit-identical.
  const float m0 = static_cast<float>(mean[0]), m1 = static_cast<float>(mean[1]), m2 = static_cast<float>(mean[2]);
  const float s0 = static_cast<float>(std[0]), s1 = static_cast<float>(std[1]), s2 = static_cast<float>(std[2]);
  const uint8_t* src = frames.data_ptr<uint8_t>();
  float* dst = out.data_ptr<float>();
  const int64_t plane = h * w, rows = n * t * h;
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(w, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t ni = r / (t * h), ti = (r / h) % t, hi = r % h;
      float* q0 = dst + ((ni * 3 + 0) * t + ti) * plane + hi * w;
      normalize_row(src + r * w * 3, q0, q0 + t * plane, q0 + 2 * t * plane, w, m0, m1, m2, s0, s1, s2);
    }
  });
  return out;
}

}  // namespace cpu
}  // namespace squeezetime

TORCH_LIBRARY_IMPL(squeezetime, CPU, m) { m.impl("squeeze_time", &squeezetime::cpu::squeeze_time_cpu); }
