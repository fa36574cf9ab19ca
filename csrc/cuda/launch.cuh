// What every CUDA kernel of the squeezetime operators shares: launch sizes and the rule that makes them safe
// inside a CUDA graph capture. Each launch goes on the current stream (at::cuda::getCurrentCUDAStream), the
// host never waits on the device (no .item(), no cudaDeviceSynchronize), and temporaries come from the caching
// allocator on that stream, so a capture records them in its private pool and a replay finds them there.
#pragma once
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

namespace squeezetime {
namespace cuda {

constexpr int kThreads = 256;

// Grid-stride loops cover any size: at most 2^20 blocks of kThreads threads.
inline int blocks_for(int64_t n) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(1) << 20)));
}

inline cudaStream_t stream() { return at::cuda::getCurrentCUDAStream(); }

inline void check_cuda(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.is_cuda(), "squeezetime::", op, ": ", name, " must be a CUDA tensor, got ", t.device());
}

inline void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* op, const char* name) {
  TORCH_CHECK(a.device() == b.device(), "squeezetime::", op, ": ", name, " is on ", b.device(), ", x on ",
              a.device());
}

inline bool is_reduced_or_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

}  // namespace cuda
}  // namespace squeezetime
