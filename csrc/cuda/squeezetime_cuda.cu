// CUDA kernels of the squeezetime operators (float32, float16, bfloat16; computed in float32).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common.h"

namespace squeezetime {
namespace cuda {

constexpr int kThreads = 256;

static inline int blocks_for(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(1) << 20));
}

// One thread per input pixel (n, t, h, w): reads 3 bytes, writes 3 floats (coalesced along w).
__global__ void squeeze_time_kernel(const uint8_t* __restrict__ src, float* __restrict__ dst, int64_t pixels,
                                    int64_t t, int64_t hw, float m0, float m1, float m2, float s0, float s1,
                                    float s2) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < pixels; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ni = i / (t * hw), ti = (i / hw) % t, p = i % hw;
    const uint8_t* s = src + 3 * i;
    float* q = dst + ((ni * 3) * t + ti) * hw + p;
    q[0] = (static_cast<float>(s[0]) - m0) / s0;
    q[t * hw] = (static_cast<float>(s[1]) - m1) / s1;
    q[2 * t * hw] = (static_cast<float>(s[2]) - m2) / s2;
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
  squeeze_time_kernel<<<blocks_for(pixels), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      frames.data_ptr<uint8_t>(), out.data_ptr<float>(), pixels, t, h * w, float(mean[0]), float(mean[1]),
      float(mean[2]), float(std[0]), float(std[1]), float(std[2]));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

// Dense tensors in one layout: element i has channel (i / hw) % c (NCHW) or i % c (NHWC).
template <typename T, bool kRes>
__global__ void ctl_combine_kernel(const T* __restrict__ tp, const T* __restrict__ sp, const T* __restrict__ gp,
                                   const T* __restrict__ rp, const float* __restrict__ scale,
                                   const float* __restrict__ shift, T* __restrict__ out, int64_t numel, int64_t c,
                                   int64_t hw, bool nhwc, bool relu) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ci = nhwc ? i % c : (i / hw) % c;
    const float g = static_cast<float>(gp[i]);
    float y = scale[ci] * (static_cast<float>(tp[i]) + static_cast<float>(sp[i]) / (1.0f + expf(-g))) + shift[ci];
    if (kRes) y += static_cast<float>(rp[i]);
    if (relu) y = y < 0.0f ? 0.0f : y;
    out[i] = static_cast<T>(y);
  }
}

at::Tensor ctl_combine_cuda(const at::Tensor& temporal, const at::Tensor& short_, const at::Tensor& glo,
                            const at::Tensor& scale, const at::Tensor& shift,
                            const c10::optional<at::Tensor>& residual, bool relu) {
  std::vector<at::Tensor> ins = check_ctl_combine_args(temporal, short_, glo, scale, shift, residual);
  const auto dtype = temporal.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16,
              "squeezetime::ctl_combine: on CUDA, tensors must be float32, float16 or bfloat16, got ", dtype);
  const c10::cuda::CUDAGuard guard(temporal.device());
  const bool nhwc = choose_nhwc(ins);
  for (auto& x : ins) x = x.contiguous(nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  at::Tensor out = empty_output(temporal, nhwc);
  const int64_t numel = out.numel();
  if (numel == 0) return out;
  const at::Tensor a = scale.to(at::kFloat).contiguous(), b = shift.to(at::kFloat).contiguous();
  const int64_t c = temporal.size(1), hw = temporal.size(2) * temporal.size(3);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "ctl_combine_cuda", [&] {
    const scalar_t* r = ins.size() == 4 ? ins[3].data_ptr<scalar_t>() : nullptr;
    if (r) {
      ctl_combine_kernel<scalar_t, true><<<blocks_for(numel), kThreads, 0, stream>>>(
          ins[0].data_ptr<scalar_t>(), ins[1].data_ptr<scalar_t>(), ins[2].data_ptr<scalar_t>(), r,
          a.data_ptr<float>(), b.data_ptr<float>(), out.data_ptr<scalar_t>(), numel, c, hw, nhwc, relu);
    } else {
      ctl_combine_kernel<scalar_t, false><<<blocks_for(numel), kThreads, 0, stream>>>(
          ins[0].data_ptr<scalar_t>(), ins[1].data_ptr<scalar_t>(), ins[2].data_ptr<scalar_t>(), nullptr,
          a.data_ptr<float>(), b.data_ptr<float>(), out.data_ptr<scalar_t>(), numel, c, hw, nhwc, relu);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace cuda
}  // namespace squeezetime

TORCH_LIBRARY_IMPL(squeezetime, CUDA, m) {
  m.impl("squeeze_time", &squeezetime::cuda::squeeze_time_cuda);
  m.impl("ctl_combine", &squeezetime::cuda::ctl_combine_cuda);
}
