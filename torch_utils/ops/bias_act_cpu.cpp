// bias_act for piecewise-linear activations on the CPU, in one pass each way.
//
// Forward: y = clamp(act(x + b) * gain, -clamp, clamp) with act(z) = z for z > 0, else z * neg_slope.
// Backward: dx = dy * slope(y), slope = gain (y > 0) or neg_slope * gain, 0 where the output was clamped. The slope
// is read off the output, so the backward keeps y only, and it is linear in dy: its own derivative is the same pass.
// The plain PyTorch composition takes three passes forward (bias, activation, clamp) and four backward; at the
// demo's 32-64 channels these element-wise passes cost as much as the convolutions in bf16 (docs/PERFORMANCE.md).
// Each element is computed in float (double for double) and rounded once. Built with -march=native for the CPU it
// runs on (torch_utils/custom_ops.py keys the build by the CPU), so the compiler vectorises the inner loops.

#include <torch/extension.h>

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>

namespace {

template <typename T>
struct Act {
  T neg_slope, gain, clamp;  // clamp < 0: none
  bool clamps() const { return clamp >= T(0); }
  T forward(T z) const {
    T y = (z > T(0) ? z : z * neg_slope) * gain;
    return clamps() ? std::min(std::max(y, -clamp), clamp) : y;
  }
  T slope(T y) const {
    if (clamps() && (y <= -clamp || y >= clamp)) return T(0);
    return y > T(0) ? gain : neg_slope * gain;
  }
};

constexpr int64_t kGrain = 32768;  // elements per task: small layers run on one thread

// The memory order of x: rows of `row_len` elements whose channel is either the position in the row (channels
// last, or a 2-D [N, C] input) or constant along the row (row index modulo C: NCHW planes).
struct Layout {
  int64_t rows, row_len, channels;
  bool channel_in_row;
};

Layout layout_of(const torch::Tensor& x, int64_t dim) {
  const int64_t channels = x.size(dim);
  if (x.dim() == 4 && dim == 1 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    return {x.numel() / std::max<int64_t>(channels, 1), channels, channels, true};
  }
  TORCH_CHECK(x.is_contiguous(), "bias_act_cpu: x must be contiguous or channels_last (dim 1)");
  int64_t inner = 1;
  for (int64_t i = dim + 1; i < x.dim(); ++i) inner *= x.size(i);
  if (inner == 1) return {x.numel() / std::max<int64_t>(channels, 1), channels, channels, true};
  return {x.numel() / inner, inner, channels, false};
}

template <typename scalar_t>
void forward_rows(const scalar_t* x, const scalar_t* b, scalar_t* y, const Layout& l, Act<at::opmath_type<scalar_t>> a) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(l.row_len, 1));
  at::parallel_for(0, l.rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const scalar_t* xr = x + r * l.row_len;
      scalar_t* yr = y + r * l.row_len;
      if (l.channel_in_row && b != nullptr) {
        for (int64_t j = 0; j < l.row_len; ++j) yr[j] = scalar_t(a.forward(acc_t(xr[j]) + acc_t(b[j])));
      } else {
        const acc_t bias = (b != nullptr) ? acc_t(b[r % l.channels]) : acc_t(0);
        for (int64_t j = 0; j < l.row_len; ++j) yr[j] = scalar_t(a.forward(acc_t(xr[j]) + bias));
      }
    }
  });
}

template <typename scalar_t>
void slope_times(const scalar_t* dy, const scalar_t* y, scalar_t* dx, int64_t n, Act<at::opmath_type<scalar_t>> a) {
  using acc_t = at::opmath_type<scalar_t>;
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dx[i] = scalar_t(acc_t(dy[i]) * a.slope(acc_t(y[i])));
  });
}

}  // namespace

torch::Tensor forward(const torch::Tensor& x, const c10::optional<torch::Tensor>& b, int64_t dim, double neg_slope,
                      double gain, double clamp) {
  TORCH_CHECK(x.device().is_cpu(), "bias_act_cpu: x must be on the CPU");
  const Layout l = layout_of(x, dim);
  torch::Tensor bias = b.has_value() ? b->to(x.scalar_type()).contiguous() : torch::Tensor();
  TORCH_CHECK(!bias.defined() || bias.numel() == l.channels, "bias_act_cpu: b must have x.shape[dim] entries");
  torch::Tensor y = torch::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x.scalar_type(), "bias_act_cpu_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    forward_rows<scalar_t>(x.data_ptr<scalar_t>(), bias.defined() ? bias.data_ptr<scalar_t>() : nullptr,
                           y.data_ptr<scalar_t>(), l, Act<acc_t>{acc_t(neg_slope), acc_t(gain), acc_t(clamp)});
  });
  return y;
}

torch::Tensor slope_backward(const torch::Tensor& dy, const torch::Tensor& y, double neg_slope, double gain,
                             double clamp) {
  TORCH_CHECK(dy.sizes() == y.sizes() && dy.scalar_type() == y.scalar_type(), "bias_act_cpu: dy must match y");
  const auto format = y.is_contiguous() ? at::MemoryFormat::Contiguous : at::MemoryFormat::ChannelsLast;
  TORCH_CHECK(y.is_contiguous(format), "bias_act_cpu: y must be contiguous or channels_last");
  const torch::Tensor grad = dy.contiguous(format);
  torch::Tensor dx = torch::empty_like(y);
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, y.scalar_type(), "bias_act_cpu_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    slope_times<scalar_t>(grad.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(), y.numel(),
                          Act<acc_t>{acc_t(neg_slope), acc_t(gain), acc_t(clamp)});
  });
  return dx;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "y = clamp(act(x + b) * gain)");
  m.def("slope_backward", &slope_backward, "dy * dy/dz read off the output y");
}
