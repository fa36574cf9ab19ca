// CUDA kernels of squeezetime::squeeze_time: uint8 RGB frames (N, T, H, W, 3) -> (x - mean[c]) / std[c] at
// channel c*T + t, in float32 arithmetic (bit-identical to the CPU kernel and the reference), then rounded once
// to the output dtype. squeeze_time writes float32 NCHW; squeeze_time.out also writes straight into a
// channels-last float32 / float16 / bfloat16 tensor: the GPU network's input, with no float NCHW tensor between.
#include <torch/library.h>

#include "../common.h"
#include "launch.cuh"

namespace squeezetime {
namespace cuda {

struct Stats {
  float m[3], s[3];
};

static Stats stats_of(c10::ArrayRef<double> mean, c10::ArrayRef<double> std) {
  Stats st;
  for (int c = 0; c < 3; ++c) st.m[c] = static_cast<float>(mean[c]), st.s[c] = static_cast<float>(std[c]);
  return st;
}

// NCHW float32: one thread per input pixel (n, t, h, w); reads 3 bytes, writes 3 floats (coalesced along w).
__global__ void squeeze_time_nchw_kernel(const uint8_t* __restrict__ src, float* __restrict__ dst, int64_t pixels,
                                         int64_t t, int64_t hw, Stats st) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < pixels; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ni = i / (t * hw), ti = (i / hw) % t, p = i % hw;
    const uint8_t* s = src + 3 * i;
    float* q = dst + ((ni * 3) * t + ti) * hw + p;
    q[0] = (static_cast<float>(s[0]) - st.m[0]) / st.s[0];
    q[t * hw] = (static_cast<float>(s[1]) - st.m[1]) / st.s[1];
    q[2 * t * hw] = (static_cast<float>(s[2]) - st.m[2]) / st.s[2];
  }
}

constexpr int kTilePixels = 32;  // pixels of one row per block: T x 96 bytes in, 32 x 3T values out

// Channels-last: block (n, h, tile of 32 pixels of row h). The T frames' row segments are staged in shared memory
// (coalesced 96-byte reads per frame), then the tile's 32 x 3T outputs, contiguous in channels-last, are written
// in order (coalesced writes). Output channel k of a pixel is colour k / T of frame k % T.
template <typename T>
__global__ void squeeze_time_channels_last_kernel(const uint8_t* __restrict__ src, T* __restrict__ dst, int64_t t,
                                                  int64_t h, int64_t w, Stats st) {
  extern __shared__ uint8_t tile[];  // [t][kTilePixels * 3]
  const int64_t tiles = (w + kTilePixels - 1) / kTilePixels;
  const int64_t row = blockIdx.x / tiles;  // n * h + hi
  const int64_t x0 = (blockIdx.x % tiles) * kTilePixels;
  const int64_t ni = row / h, hi = row % h;
  const int64_t np = min(static_cast<int64_t>(kTilePixels), w - x0);
  const int64_t bytes = np * 3;
  for (int64_t k = threadIdx.x; k < t * bytes; k += blockDim.x) {
    const int64_t ti = k / bytes, b = k % bytes;
    tile[ti * kTilePixels * 3 + b] = src[(((ni * t + ti) * h + hi) * w + x0) * 3 + b];
  }
  __syncthreads();
  const int64_t c3t = 3 * t;
  T* out = dst + (row * w + x0) * c3t;
  for (int64_t k = threadIdx.x; k < np * c3t; k += blockDim.x) {
    const int64_t p = k / c3t, ch = k % c3t, c = ch / t, ti = ch % t;
    const float v = static_cast<float>(tile[ti * kTilePixels * 3 + p * 3 + c]);
    out[k] = static_cast<T>((v - st.m[c]) / st.s[c]);
  }
}

at::Tensor squeeze_time_cuda(const at::Tensor& frames_in, c10::ArrayRef<double> mean, c10::ArrayRef<double> std) {
  check_squeeze_time_args(frames_in, mean, std);
  const c10::cuda::CUDAGuard guard(frames_in.device());
  const at::Tensor frames = frames_in.contiguous();
  const int64_t n = frames.size(0), t = frames.size(1), h = frames.size(2), w = frames.size(3);
  at::Tensor out = at::empty({n, 3 * t, h, w}, frames.options().dtype(at::kFloat));
  const int64_t pixels = n * t * h * w;
  if (pixels == 0) return out;
  squeeze_time_nchw_kernel<<<blocks_for(pixels), kThreads, 0, stream()>>>(
      frames.data_ptr<uint8_t>(), out.data_ptr<float>(), pixels, t, h * w, stats_of(mean, std));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor& squeeze_time_out_cuda(const at::Tensor& frames_in, c10::ArrayRef<double> mean, c10::ArrayRef<double> std,
                                  at::Tensor& out) {
  check_squeeze_time_args(frames_in, mean, std);
  check_cuda(out, "squeeze_time.out", "out");
  check_same_device(frames_in, out, "squeeze_time.out", "out");
  const c10::cuda::CUDAGuard guard(frames_in.device());
  const at::Tensor frames = frames_in.contiguous();
  const int64_t n = frames.size(0), t = frames.size(1), h = frames.size(2), w = frames.size(3);
  TORCH_CHECK(out.dim() == 4 && out.size(0) == n && out.size(1) == 3 * t && out.size(2) == h && out.size(3) == w,
              "squeezetime::squeeze_time.out: out must be (N, 3T, H, W) = (", n, ", ", 3 * t, ", ", h, ", ", w,
              "), got ", out.sizes());
  const bool channels_last = out.is_contiguous(at::MemoryFormat::ChannelsLast);
  TORCH_CHECK(out.scalar_type() == at::kFloat || (channels_last && is_reduced_or_float(out.scalar_type())),
              "squeezetime::squeeze_time.out: out must be float32 (or channels-last float16 / bfloat16), got ",
              out.scalar_type());
  if (out.numel() == 0) return out;
  const Stats st = stats_of(mean, std);
  if (out.is_contiguous() && out.scalar_type() == at::kFloat) {  // NCHW (also the layout of N=1, H=W=1 tensors)
    const int64_t pixels = n * t * h * w;
    squeeze_time_nchw_kernel<<<blocks_for(pixels), kThreads, 0, stream()>>>(
        frames.data_ptr<uint8_t>(), out.data_ptr<float>(), pixels, t, h * w, st);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return out;
  }
  TORCH_CHECK(channels_last, "squeezetime::squeeze_time.out: out must be contiguous or channels-last");
  const size_t shared = static_cast<size_t>(t) * kTilePixels * 3;
  TORCH_CHECK(shared <= 48 * 1024, "squeezetime::squeeze_time.out: at most 512 frames per clip on CUDA, got ", t);
  const int64_t blocks = n * h * ((w + kTilePixels - 1) / kTilePixels);
  TORCH_CHECK(blocks < (int64_t(1) << 31), "squeezetime::squeeze_time.out: too many rows for one launch");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "squeeze_time_out_cuda", [&] {
    squeeze_time_channels_last_kernel<scalar_t><<<static_cast<unsigned>(blocks), kThreads, shared, stream()>>>(
        frames.data_ptr<uint8_t>(), out.data_ptr<scalar_t>(), t, h, w, st);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace cuda
}  // namespace squeezetime

TORCH_LIBRARY_IMPL(squeezetime, CUDA, m) {
  m.impl("squeeze_time", &squeezetime::cuda::squeeze_time_cuda);
  m.impl("squeeze_time.out", &squeezetime::cuda::squeeze_time_out_cuda);
}
