// Branch-free scalar maths written so that GCC/Clang auto-vectorise the loops that use it (no intrinsics,
// no Sleef, no CPU_CAPABILITY dispatch): exp, sigmoid and the bfloat16 <-> float conversions.
#pragma once
#include <cstdint>
#include <cstring>

namespace squeezetime {
namespace cpu {

// Cephes-style expf: |relative error| < 2 ulp on [-87, 88] (inputs are clamped to that range).
static inline float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float kMagic = 12582912.0f;  // 1.5 * 2^23: adding and subtracting rounds to the nearest integer
  const float n = (x * 1.44269504088896341f + kMagic) - kMagic;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

static inline float fast_sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

static inline float load_f(const float* p) { return *p; }
static inline float load_f(const uint16_t* p) {  // bfloat16 bits
  const uint32_t u = static_cast<uint32_t>(*p) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}
static inline void store_f(float* p, float v) { *p = v; }
static inline void store_f(uint16_t* p, float v) {  // round to nearest even, NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &v, sizeof(u));
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  *p = static_cast<uint16_t>(v != v ? 0x7FC0u : rounded);
}

}  // namespace cpu
}  // namespace squeezetime
