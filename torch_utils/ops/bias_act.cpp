// Python binding of the bias_act CUDA kernel: validates arguments, allocates the output.

// Per-operator ATen headers and the pybind11 tensor casters, not <torch/extension.h>: half the compile time.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/csrc/utils/pybind.h>
#include <c10/cuda/CUDAGuard.h>

#include "bias_act.h"

namespace {

// Returns act^(mode)(x + b) * gain (clamped, see bias_act.h) for a dense CUDA tensor x.
// b is 1-D along dimension `dim` of x, or empty; grad has the shape of x (ignored when mode == 0).
at::Tensor bias_act(at::Tensor x, at::Tensor b, at::Tensor grad, int64_t mode, int64_t act,
                       double alpha, double gain, double clamp, int64_t dim) {
    TORCH_CHECK(x.is_cuda(), "bias_act: x must be a CUDA tensor");
    TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kHalf || x.scalar_type() == at::kDouble,
                "bias_act: x must be float16, float32 or float64, got ", x.scalar_type());
    TORCH_CHECK(x.is_non_overlapping_and_dense(), "bias_act: x must be dense (contiguous or channels_last)");
    TORCH_CHECK(mode >= kBiasActForward && mode <= kBiasActSecondGrad, "bias_act: mode must be 0, 1 or 2, got ", mode);
    TORCH_CHECK(act >= kLinear && act <= kSwish, "bias_act: unknown activation code ", act);
    BiasActParams p{x.numel(), 1, 0, int(mode), int(act), alpha, gain, clamp};
    if (b.numel() > 0) {
        TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act: dim=", dim, " is out of range for x.dim()=", x.dim());
        TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(dim), "bias_act: b must have shape [", x.size(dim), "]");
        TORCH_CHECK(b.scalar_type() == x.scalar_type() && b.device() == x.device(),
                    "bias_act: b must have the dtype and device of x");
        b = b.contiguous();
        p.bias_stride = x.stride(dim);
        p.bias_len = b.size(0);
    }
    if (mode != kBiasActForward) {
        TORCH_CHECK(grad.sizes() == x.sizes() && grad.scalar_type() == x.scalar_type() && grad.device() == x.device(),
                    "bias_act: grad must have the shape, dtype and device of x");
        if (grad.strides() != x.strides())  // The kernel walks x, grad and y with one flat index.
            grad = at::empty_like(x).copy_(grad);
    }
    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor y = at::empty_like(x);  // Dense x: same strides as x.
    bias_act_launch(y, x, b, grad, p);
    return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("bias_act", &bias_act, "Fused bias + activation + gain + clamp (or a derivative of it), CUDA");
}
