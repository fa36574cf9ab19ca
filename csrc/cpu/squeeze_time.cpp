// CPU kernels of squeezetime::squeeze_time: the time-into-channel fold fused with normalisation and the
// layout change, one pass over memory: NTHWC uint8 -> N(CT)HW float32 (parallel over (n, t, h) rows), and
// (squeeze_time.out) straight into a channels-last float32 or bfloat16 tensor, the optimised network's input
// layout (parallel over (n, h) rows), which saves the float NCHW tensor and its conversion.
#include <ATen/Parallel.h>
#include <algorithm>
#include <torch/library.h>

#include "../common.h"
#include "vec_math.h"

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

// mean and std as float32: the kernels compute in float32, in the order of normalize_clip, (float(x) - mean) / std,
// so results are bit-identical to it.
struct Stats {
  float m[3], s[3];
  Stats(c10::ArrayRef<double> mean, c10::ArrayRef<double> std) {
    for (int c = 0; c < 3; ++c) m[c] = static_cast<float>(mean[c]), s[c] = static_cast<float>(std[c]);
  }
};

// Contiguous uint8 (N, T, H, W, 3) -> float32 NCHW (N, 3T, H, W) at dst.
static void squeeze_time_nchw(const at::Tensor& frames, const Stats& st, float* dst) {
  const int64_t n = frames.size(0), t = frames.size(1), h = frames.size(2), w = frames.size(3);
  const uint8_t* src = frames.data_ptr<uint8_t>();
  const int64_t plane = h * w, rows = n * t * h;
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(w, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t ni = r / (t * h), ti = (r / h) % t, hi = r % h;
      float* q0 = dst + ((ni * 3 + 0) * t + ti) * plane + hi * w;
      normalize_row(src + r * w * 3, q0, q0 + t * plane, q0 + 2 * t * plane, w, st.m[0], st.m[1], st.m[2], st.s[0],
                    st.s[1], st.s[2]);
    }
  });
}

at::Tensor squeeze_time_cpu(const at::Tensor& frames_in, c10::ArrayRef<double> mean, c10::ArrayRef<double> std) {
  check_squeeze_time_args(frames_in, mean, std);
  const at::Tensor frames = frames_in.contiguous();
  const int64_t n = frames.size(0), t = frames.size(1), h = frames.size(2), w = frames.size(3);
  at::Tensor out = at::empty({n, 3 * t, h, w}, frames.options().dtype(at::kFloat));
  if (out.numel() > 0) squeeze_time_nchw(frames, Stats(mean, std), out.data_ptr<float>());
  return out;
}

// One output row (n, h) of the channels-last layout: pixel x's 3T channels are c*T + t. A uint8 value has 256
// possible results per channel, so they are computed once (lut, same float32 arithmetic as above, then the
// output dtype's rounding) and the row is a gather from the T frames' rows, written sequentially.
template <typename T>
static void channels_last_row(const uint8_t* const* __restrict__ rows, const T (*lut)[256], T* __restrict__ q,
                              int64_t t, int64_t w) {
  for (int64_t x = 0; x < w; ++x) {
    for (int64_t c = 0; c < 3; ++c) {
      const T* l = lut[c];
      for (int64_t ti = 0; ti < t; ++ti) q[c * t + ti] = l[rows[ti][3 * x + c]];
    }
    q += 3 * t;
  }
}

template <typename T>
static void squeeze_time_channels_last(const at::Tensor& frames, const Stats& st, T* dst) {
  const int64_t n = frames.size(0), t = frames.size(1), h = frames.size(2), w = frames.size(3);
  T lut[3][256];
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) store_f(&lut[c][v], (static_cast<float>(v) - st.m[c]) / st.s[c]);
  const uint8_t* src = frames.data_ptr<uint8_t>();
  const int64_t frame = h * w * 3;
  at::parallel_for(0, n * h, std::max<int64_t>(1, 4096 / std::max<int64_t>(w * t, 1)), [&](int64_t b, int64_t e) {
    std::vector<const uint8_t*> rows(t);
    for (int64_t r = b; r < e; ++r) {
      const int64_t ni = r / h, hi = r % h;
      for (int64_t ti = 0; ti < t; ++ti) rows[ti] = src + (ni * t + ti) * frame + hi * w * 3;
      channels_last_row<T>(rows.data(), lut, dst + r * w * 3 * t, t, w);
    }
  });
}

// Into a preallocated (N, 3T, H, W) tensor: float32 NCHW (the plain kernel above), or channels-last float32 or
// bfloat16 (the network's input buffer, reused from call to call).
at::Tensor& squeeze_time_out_cpu(const at::Tensor& frames_in, c10::ArrayRef<double> mean, c10::ArrayRef<double> std,
                                 at::Tensor& out) {
  check_squeeze_time_args(frames_in, mean, std);
  const at::Tensor frames = frames_in.contiguous();
  const int64_t n = frames.size(0), t = frames.size(1), h = frames.size(2), w = frames.size(3);
  TORCH_CHECK(out.dim() == 4 && out.size(0) == n && out.size(1) == 3 * t && out.size(2) == h && out.size(3) == w,
              "squeezetime::squeeze_time.out: out must be (N, 3T, H, W) = (", n, ", ", 3 * t, ", ", h, ", ", w,
              "), got ", out.sizes());
  TORCH_CHECK(out.device().is_cpu(), "squeezetime::squeeze_time.out: out must be on the CPU, got ", out.device());
  const bool channels_last = out.is_contiguous(at::MemoryFormat::ChannelsLast);
  TORCH_CHECK(out.scalar_type() == at::kFloat || (channels_last && out.scalar_type() == at::kBFloat16),
              "squeezetime::squeeze_time.out: out must be float32 (or channels-last bfloat16), got ",
              out.scalar_type());
  if (out.numel() == 0) return out;
  const Stats st(mean, std);
  if (out.is_contiguous() && out.scalar_type() == at::kFloat) {  // NCHW (also the layout of N=1, H=W=1 tensors)
    squeeze_time_nchw(frames, st, out.data_ptr<float>());
    return out;
  }
  TORCH_CHECK(channels_last, "squeezetime::squeeze_time.out: out must be contiguous or channels-last");
  if (out.scalar_type() == at::kFloat) {
    squeeze_time_channels_last<float>(frames, st, out.data_ptr<float>());
  } else {
    squeeze_time_channels_last<uint16_t>(frames, st, reinterpret_cast<uint16_t*>(out.data_ptr()));
  }
  return out;
}

}  // namespace cpu
}  // namespace squeezetime

TORCH_LIBRARY_IMPL(squeezetime, CPU, m) {
  m.impl("squeeze_time", &squeezetime::cpu::squeeze_time_cpu);
  m.impl("squeeze_time.out", &squeezetime::cpu::squeeze_time_out_cpu);
}
