// CUDA kernel of squeezetime::ctl_combine: the CTL module's tail and the batch norm after it in one pass,
// y = scale[c] * (temporal + short * sigmoid(glo)) + shift[c] (+ residual) (ReLU); float32, float16 and
// bfloat16 tensors, computed in float32 and rounded once.
#include <torch/library.h>

#include "../common.h"
#include "launch.cuh"

namespace squeezetime {
namespace cuda {

// Dense tensors in one layout: element i has channel (i / hw) % c (NCHW) or i % c (NHWC).
template <typename T, bool kRes>
__global__ void ctl_combine_kernel(const T* __restrict__ tp, const T* __restrict__ sp, const T* __restrict__ gp,
                                   const T* __restrict__ rp, const float* __restrict__ scale,
                                   const float* __restrict__ shift, T* __restrict__ out, int64_t numel, int64_t c,
                                   int64_t hw, bool nhwc, bool relu) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ci = nhwc ? i % c : (i / hw) % c;
    const float g = static_cast<float>(gp[i]);
    float y = scale[ci] * (static_cast<float>(tp[i]) + static_cast<float>(sp[i]) * sigmoid(g)) + shift[ci];
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
  TORCH_CHECK(is_reduced_or_float(dtype),
              "squeezetime::ctl_combine: on CUDA, tensors must be float32, float16 or bfloat16, got ", dtype);
  const c10::cuda::CUDAGuard guard(temporal.device());
  const bool nhwc = choose_nhwc(ins);
  for (auto& x : ins) x = x.contiguous(nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  at::Tensor out = empty_output(temporal, nhwc);
  const int64_t numel = out.numel();
  if (numel == 0) return out;
  // float32 copies only when they are not already (the optimised network keeps them float32: no allocation)
  const at::Tensor a = scale.to(at::kFloat).contiguous(), b = shift.to(at::kFloat).contiguous();
  const int64_t c = temporal.size(1), hw = temporal.size(2) * temporal.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "ctl_combine_cuda", [&] {
    const scalar_t* r = ins.size() == 4 ? ins[3].data_ptr<scalar_t>() : nullptr;
    if (r) {
      ctl_combine_kernel<scalar_t, true><<<blocks_for(numel), kThreads, 0, stream()>>>(
          ins[0].data_ptr<scalar_t>(), ins[1].data_ptr<scalar_t>(), ins[2].data_ptr<scalar_t>(), r,
          a.data_ptr<float>(), b.data_ptr<float>(), out.data_ptr<scalar_t>(), numel, c, hw, nhwc, relu);
    } else {
      ctl_combine_kernel<scalar_t, false><<<blocks_for(numel), kThreads, 0, stream()>>>(
          ins[0].data_ptr<scalar_t>(), ins[1].data_ptr<scalar_t>(), ins[2].data_ptr<scalar_t>(), nullptr,
          a.data_ptr<float>(), b.data_ptr<float>(), out.data_ptr<scalar_t>(), numel, c, hw, nhwc, relu);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace cuda
}  // namespace squeezetime

TORCH_LIBRARY_IMPL(squeezetime, CUDA, m) { m.impl("ctl_combine", &squeezetime::cuda::ctl_combine_cuda); }
