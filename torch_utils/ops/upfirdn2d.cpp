// Python binding of the upfirdn2d CUDA kernels: validates arguments, allocates the output.

// Per-operator ATen headers and the pybind11 tensor casters, not <torch/extension.h>: half the compile time.
#include <cstdlib>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/csrc/utils/pybind.h>
#include <c10/cuda/CUDAGuard.h>

#include "upfirdn2d.h"

namespace {

// One upfirdn2d pass with a 2-D float32 filter f (see upfirdn2d.h); the output keeps x's memory format.
at::Tensor upfirdn2d(at::Tensor x, at::Tensor f, int64_t up_x, int64_t up_y, int64_t down_x,
                        int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1,
                        bool flip_filter, double gain) {
    TORCH_CHECK(x.is_cuda() && x.dim() == 4, "upfirdn2d: x must be a 4-D [N, C, H, W] CUDA tensor");
    TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kHalf || x.scalar_type() == at::kDouble,
                "upfirdn2d: x must be float16, float32 or float64, got ", x.scalar_type());
    TORCH_CHECK(f.dim() == 2 && f.scalar_type() == at::kFloat && f.device() == x.device(),
                "upfirdn2d: f must be a 2-D float32 tensor on the device of x");
    TORCH_CHECK(f.size(0) >= 1 && f.size(1) >= 1, "upfirdn2d: f must not be empty");
    TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "upfirdn2d: up and down must be >= 1");
    const int64_t limit = int64_t(1) << 30;  // the kernels index pixels with 32-bit ints
    TORCH_CHECK(x.size(2) * up_y < limit && x.size(3) * up_x < limit && std::abs(pad_x0) < limit &&
                std::abs(pad_x1) < limit && std::abs(pad_y0) < limit && std::abs(pad_y1) < limit,
                "upfirdn2d: image size, up or padding too large");
    const int64_t out_w = (x.size(3) * up_x + pad_x0 + pad_x1 - f.size(1)) / down_x + 1;
    const int64_t out_h = (x.size(2) * up_y + pad_y0 + pad_y1 - f.size(0)) / down_y + 1;
    TORCH_CHECK(x.size(3) * up_x + pad_x0 + pad_x1 >= f.size(1) && x.size(2) * up_y + pad_y0 + pad_y1 >= f.size(0),
                "upfirdn2d: the padded input (", x.size(2) * up_y + pad_y0 + pad_y1, " x ",
                x.size(3) * up_x + pad_x0 + pad_x1, ") is smaller than the filter (", f.size(0), " x ", f.size(1), ")");
    f = f.contiguous();
    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w},
                                x.options().memory_format(x.suggest_memory_format()));
    Upfirdn2dParams p{};
    p.up_x = int(up_x), p.up_y = int(up_y), p.down_x = int(down_x), p.down_y = int(down_y);
    p.pad_x0 = int(pad_x0), p.pad_y0 = int(pad_y0);
    p.in_w = int(x.size(3)), p.in_h = int(x.size(2)), p.out_w = int(out_w), p.out_h = int(out_h);
    p.filter_w = int(f.size(1)), p.filter_h = int(f.size(0));
    p.channels = int(x.size(1));
    p.planes = x.size(0) * x.size(1);
    for (int d = 0; d < 4; d++) {
        p.in_stride[d] = x.stride(d);
        p.out_stride[d] = y.stride(d);
    }
    p.flip_filter = flip_filter;
    p.gain = gain;
    upfirdn2d_launch(y, x, f, p);
    return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("upfirdn2d", &upfirdn2d, "Upsample, pad, FIR-filter and downsample 2-D images, CUDA");
}
