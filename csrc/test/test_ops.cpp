// C++ test of libsqueezetime_ops: call the operators through the dispatcher, as a libtorch user would, and
// compare them with their definitions written with ATen. Exit code 0 on success (run by ctest).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <iostream>

static int failures = 0;

static void expect(bool ok, const std::string& what) {
  std::cout << (ok ? "ok   " : "FAIL ") << what << std::endl;
  if (!ok) ++failures;
}

int main() {
  auto squeeze_time = c10::Dispatcher::singleton()
                          .findSchemaOrThrow("squeezetime::squeeze_time", "")
                          .typed<at::Tensor(const at::Tensor&, c10::ArrayRef<double>, c10::ArrayRef<double>)>();
  auto ctl_combine = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("squeezetime::ctl_combine", "")
                         .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                           const at::Tensor&, const std::optional<at::Tensor>&, bool)>();
  torch::manual_seed(0);

  // squeeze_time == ((frames - mean) / std) permuted to (N, 3, T, H, W) and folded to (N, 3T, H, W)
  const std::vector<double> mean{123.675, 116.28, 103.53}, std{58.395, 57.12, 57.375};
  auto frames = torch::randint(0, 256, {2, 5, 7, 9, 3}, torch::kUInt8);
  auto out = squeeze_time.call(frames, mean, std);
  auto m = torch::tensor({123.675f, 116.28f, 103.53f}), s = torch::tensor({58.395f, 57.12f, 57.375f});
  auto expected = ((frames.to(torch::kFloat) - m) / s).permute({0, 4, 1, 2, 3}).reshape({2, 15, 7, 9});
  expect(out.sizes() == expected.sizes() && torch::equal(out, expected), "squeeze_time is normalize + fold");

  // squeeze_time.out into channels-last: the same values in the network's input layout
  auto squeeze_time_out =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("squeezetime::squeeze_time", "out")
          .typed<at::Tensor&(const at::Tensor&, c10::ArrayRef<double>, c10::ArrayRef<double>, at::Tensor&)>();
  auto nhwc = torch::empty({2, 15, 7, 9}).contiguous(at::MemoryFormat::ChannelsLast);
  squeeze_time_out.call(frames, mean, std, nhwc);
  expect(nhwc.is_contiguous(at::MemoryFormat::ChannelsLast) && torch::equal(nhwc, expected),
         "squeeze_time.out writes channels-last");

  // ctl_combine == relu(scale * (t + s * sigmoid(g)) + shift + residual), NCHW and channels-last
  for (auto fmt : {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast}) {
    auto t = torch::randn({2, 13, 6, 5}).contiguous(fmt), sh = torch::randn({2, 13, 6, 5}).contiguous(fmt);
    auto g = torch::randn({2, 13, 6, 5}).contiguous(fmt), r = torch::randn({2, 13, 6, 5}).contiguous(fmt);
    auto scale = torch::randn({13}), shift = torch::randn({13});
    auto y = ctl_combine.call(t, sh, g, scale, shift, r, true);
    auto ref = torch::relu(scale.view({1, 13, 1, 1}) * (t + sh * torch::sigmoid(g)) + shift.view({1, 13, 1, 1}) + r);
    expect(torch::allclose(y, ref, 1e-5, 1e-5), std::string("ctl_combine ") +
                                                     (fmt == at::MemoryFormat::ChannelsLast ? "channels-last" : "NCHW"));
    auto yb = ctl_combine.call(t.to(torch::kBFloat16), sh.to(torch::kBFloat16), g.to(torch::kBFloat16), scale, shift,
                               std::nullopt, false);
    auto refb = scale.view({1, 13, 1, 1}) * (t.to(torch::kBFloat16).to(torch::kFloat) +
                                             sh.to(torch::kBFloat16).to(torch::kFloat) *
                                                 torch::sigmoid(g.to(torch::kBFloat16).to(torch::kFloat))) +
                shift.view({1, 13, 1, 1});
    expect(yb.scalar_type() == torch::kBFloat16 && torch::allclose(yb.to(torch::kFloat), refb, 2e-2, 2e-2),
           "ctl_combine bfloat16");
  }
  bool threw = false;
  try {
    auto d = torch::randn({1, 2, 3, 3}, torch::kDouble);
    ctl_combine.call(d, d, d, torch::ones({2}), torch::ones({2}), std::nullopt, true);
  } catch (const c10::Error& e) {
    threw = std::string(e.what()).find("float32 or bfloat16") != std::string::npos;
  }
  expect(threw, "float64 is a clear error");
  std::cout << (failures ? "FAILED" : "PASSED") << std::endl;
  return failures ? 1 : 0;
}
