// CUDA kernel of squeezetime::to_channels_last: float32 NCHW -> channels-last float32 / float16 / bfloat16, a
// tiled transpose of each clip's (C, H*W) matrix through shared memory, so that reads (along H*W) and writes
// (along C) are both coalesced.
#include <torch/library.h>

#include "launch.cuh"

namespace squeezetime {
namespace cuda {

constexpr int kTile = 32;

// Block (tile of 32 pixels, tile of 32 channels, clip); 32 x 8 threads, each moving 4 values.
template <typename T>
__global__ void nchw_to_nhwc_kernel(const float* __restrict__ src, T* __restrict__ dst, int64_t c, int64_t hw) {
  __shared__ float tile[kTile][kTile + 1];  // +1: no bank conflicts on the transposed read
  const int64_t ni = blockIdx.z, p0 = blockIdx.x * int64_t(kTile), c0 = blockIdx.y * int64_t(kTile);
  const float* s = src + ni * c * hw;
  for (int k = threadIdx.y; k < kTile; k += blockDim.y) {
    const int64_t ci = c0 + k, p = p0 + threadIdx.x;
    if (ci < c && p < hw) tile[k][threadIdx.x] = s[ci * hw + p];
  }
  __syncthreads();
  T* d = dst + ni * c * hw;
  for (int k = threadIdx.y; k < kTile; k += blockDim.y) {
    const int64_t p = p0 + k, ci = c0 + threadIdx.x;
    if (ci < c && p < hw) d[p * c + ci] = static_cast<T>(tile[threadIdx.x][k]);
  }
}

static void check_input(const at::Tensor& x, at::ScalarType dtype) {
  TORCH_CHECK(x.dim() == 4, "squeezetime::to_channels_last: x must be (N, C, H, W), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat, "squeezetime::to_channels_last: x must be float32, got ",
              x.scalar_type());
  TORCH_CHECK(is_reduced_or_float(dtype),
              "squeezetime::to_channels_last: on CUDA, dtype must be float32, float16 or bfloat16, got ", dtype);
}

static void run(const at::Tensor& x, at::Tensor& out) {
  if (out.numel() == 0) return;
  const int64_t n = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);
  TORCH_CHECK(n <= 65535 && (c + kTile - 1) / kTile <= 65535 && (hw + kTile - 1) / kTile < (int64_t(1) << 31),
              "squeezetime::to_channels_last: tensor too large for one launch: ", x.sizes());
  const dim3 grid((hw + kTile - 1) / kTile, (c + kTile - 1) / kTile, n);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "to_channels_last_cuda", [&] {
    nchw_to_nhwc_kernel<scalar_t><<<grid, dim3(kTile, 8), 0, stream()>>>(x.data_ptr<float>(),
                                                                         out.data_ptr<scalar_t>(), c, hw);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

at::Tensor to_channels_last_cuda(const at::Tensor& x_in, at::ScalarType dtype) {
  check_input(x_in, dtype);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(dtype).memory_format(at::MemoryFormat::ChannelsLast));
  run(x, out);
  return out;
}

at::Tensor& to_channels_last_out_cuda(const at::Tensor& x_in, at::Tensor& out) {
  check_input(x_in, out.scalar_type());
  check_cuda(out, "to_channels_last.out", "out");
  check_same_device(x_in, out, "to_channels_last.out", "out");
  TORCH_CHECK(out.sizes() == x_in.sizes() && out.is_contiguous(at::MemoryFormat::ChannelsLast),
              "squeezetime::to_channels_last.out: out must be channels-last with x's shape");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  run(x, out);
  return out;
}

}  // namespace cuda
}  // namespace squeezetime

TORCH_LIBRARY_IMPL(squeezetime, CUDA, m) {
  m.impl("to_channels_last", &squeezetime::cuda::to_channels_last_cuda);
  m.impl("to_channels_last.out", &squeezetime::cuda::to_channels_last_out_cuda);
}
