// CUDA kernel of squeezetime::gate_scale: a CTL module's temporal gate applied to its input,
// xg = x * g[n, c] with g = sigmoid(w2 @ relu(w1 @ mean_hw(x[n]) + b1)), in three launches where ATen takes
// six (mean, addmm, relu, mm, sigmoid, mul): channel means, the gate's two matrix-vector products per clip in
// one block, the scaling. NHWC (channels-last) or NCHW x in float32 / float16 / bfloat16; the gate in float32.
#include <torch/library.h>

#include "../common.h"
#include "launch.cuh"

namespace squeezetime {
namespace cuda {

constexpr int kWarp = 32;

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// NHWC means: block (n, 32 channels); threadIdx.x picks the channel (coalesced along C), threadIdx.y strides
// over the pixels; the 8 partial sums per channel meet in shared memory.
template <typename T>
__global__ void channel_mean_nhwc_kernel(const T* __restrict__ x, float* __restrict__ mean, int64_t n, int64_t c,
                                         int64_t hw) {
  __shared__ float part[8][kWarp];
  const int64_t ci = blockIdx.x * int64_t(kWarp) + threadIdx.x;
  for (int64_t ni = blockIdx.y; ni < n; ni += gridDim.y) {  // gridDim.y is at most 65535
    float acc = 0.f;
    if (ci < c)
      for (int64_t p = threadIdx.y; p < hw; p += blockDim.y) acc += static_cast<float>(x[(ni * hw + p) * c + ci]);
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && ci < c) {
      float s = 0.f;
      for (int k = 0; k < 8; ++k) s += part[k][threadIdx.x];
      mean[ni * c + ci] = s / static_cast<float>(hw);
    }
    __syncthreads();  // part is rewritten by the next clip
  }
}

// NCHW means: one block per (n, c) plane, a block-wide sum over its hw values.
template <typename T>
__global__ void channel_mean_nchw_kernel(const T* __restrict__ x, float* __restrict__ mean, int64_t hw) {
  __shared__ float warps[kThreads / kWarp];
  const T* plane = x + blockIdx.x * hw;
  float acc = 0.f;
  for (int64_t p = threadIdx.x; p < hw; p += blockDim.x) acc += static_cast<float>(plane[p]);
  acc = warp_sum(acc);
  if (threadIdx.x % kWarp == 0) warps[threadIdx.x / kWarp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.f;
    for (int k = 0; k < kThreads / kWarp; ++k) s += warps[k];
    mean[blockIdx.x] = s / static_cast<float>(hw);
  }
}

// One block per clip: hid = relu(w1 @ mean + b1) then g = sigmoid(w2 @ hid), each output row a warp's dot
// product (lanes stride over the row: coalesced reads of w1/w2); mean and hid stay in shared memory.
__global__ void gate_mlp_kernel(const float* __restrict__ mean, const float* __restrict__ w1,
                                const float* __restrict__ b1, const float* __restrict__ w2, float* __restrict__ g,
                                int64_t c) {
  extern __shared__ float buf[];  // [2c]: mean, then hid
  float* m = buf;
  float* hid = buf + c;
  const int64_t ni = blockIdx.x;
  for (int64_t k = threadIdx.x; k < c; k += blockDim.x) m[k] = mean[ni * c + k];
  __syncthreads();
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  for (int64_t o = warp; o < c; o += warps) {
    float acc = 0.f;
    for (int64_t k = lane; k < c; k += kWarp) acc += w1[o * c + k] * m[k];
    acc = warp_sum(acc);
    if (lane == 0) hid[o] = fmaxf(acc + b1[o], 0.f);
  }
  __syncthreads();
  for (int64_t o = warp; o < c; o += warps) {
    float acc = 0.f;
    for (int64_t k = lane; k < c; k += kWarp) acc += w2[o * c + k] * hid[k];
    acc = warp_sum(acc);
    if (lane == 0) g[ni * c + o] = sigmoid(acc);
  }
}

template <typename T>
__global__ void scale_kernel(const T* __restrict__ x, const float* __restrict__ g, T* __restrict__ out,
                             int64_t numel, int64_t c, int64_t hw, bool nhwc) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ni = i / (c * hw), ci = nhwc ? i % c : (i / hw) % c;
    out[i] = static_cast<T>(static_cast<float>(x[i]) * g[ni * c + ci]);
  }
}

at::Tensor gate_scale_cuda(const at::Tensor& x_in, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2) {
  check_gate_scale_shapes(x_in, w1, b1, w2);
  const auto dtype = x_in.scalar_type();
  TORCH_CHECK(is_reduced_or_float(dtype),
              "squeezetime::gate_scale: on CUDA, x must be float32, float16 or bfloat16, got ", dtype);
  const int64_t n = x_in.size(0), c = x_in.size(1), hw = x_in.size(2) * x_in.size(3);
  for (const at::Tensor* p : {&w1, &b1, &w2}) check_same_device(x_in, *p, "gate_scale", "a gate weight");
  TORCH_CHECK(2 * c * sizeof(float) <= 48 * 1024, "squeezetime::gate_scale: at most 6144 channels on CUDA, got ", c);
  TORCH_CHECK(n * c < (int64_t(1) << 31), "squeezetime::gate_scale: too many (clip, channel) pairs for one launch");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const bool nhwc = gate_scale_nhwc(x_in);
  const at::Tensor x = nhwc ? x_in : x_in.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options().memory_format(nhwc ? at::MemoryFormat::ChannelsLast
                                                                      : at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const at::Tensor a = w1.to(at::kFloat).contiguous(), bb = b1.to(at::kFloat).contiguous(),
                   cc = w2.to(at::kFloat).contiguous();
  at::Tensor mean = at::empty({n, c}, x.options().dtype(at::kFloat));
  at::Tensor g = at::empty({n, c}, x.options().dtype(at::kFloat));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "gate_scale_cuda", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    if (nhwc) {
      const dim3 grid((c + kWarp - 1) / kWarp, std::min<int64_t>(n, 65535));
      channel_mean_nhwc_kernel<scalar_t><<<grid, dim3(kWarp, 8), 0, stream()>>>(xp, mean.data_ptr<float>(), n, c, hw);
    } else {
      channel_mean_nchw_kernel<scalar_t><<<n * c, kThreads, 0, stream()>>>(xp, mean.data_ptr<float>(), hw);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    gate_mlp_kernel<<<n, kThreads, 2 * c * sizeof(float), stream()>>>(
        mean.data_ptr<float>(), a.data_ptr<float>(), bb.data_ptr<float>(), cc.data_ptr<float>(), g.data_ptr<float>(), c);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    scale_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, 0, stream()>>>(
        xp, g.data_ptr<float>(), out.data_ptr<scalar_t>(), out.numel(), c, hw, nhwc);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace cuda
}  // namespace squeezetime

TORCH_LIBRARY_IMPL(squeezetime, CUDA, m) { m.impl("gate_scale", &squeezetime::cuda::gate_scale_cuda); }
