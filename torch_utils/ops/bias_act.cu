// Element-wise fused bias + activation + gain + clamp, and its first and second derivatives.
// Half inputs are computed in float, float in float, double in double (at::opmath_type).

#include <algorithm>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "bias_act.h"

namespace {

// Constants of SELU (Klambauer et al. 2017), as torch.nn.functional.selu uses them.
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
// torch.nn.functional.softplus returns x itself above this input (beta = 1).
constexpr double kSoftplusThreshold = 20.0;

template <typename T>
__device__ __forceinline__ T sigmoid(T v) { return T(1) / (T(1) + exp(-v)); }

// The activation (order 0) or its first or second derivative (order 1, 2) at v.
template <typename T>
__device__ __forceinline__ T activation(int act, int order, T v, T alpha) {
    switch (act) {
    case kLinear:
        return order == 0 ? v : (order == 1 ? T(1) : T(0));
    case kRelu:
        if (order == 0) return v > T(0) ? v : T(0);
        return order == 1 ? (v > T(0) ? T(1) : T(0)) : T(0);
    case kLrelu:
        if (order == 0) return v > T(0) ? v : v * alpha;
        return order == 1 ? (v > T(0) ? T(1) : alpha) : T(0);
    case kTanh: {
        T t = tanh(v);
        if (order == 0) return t;
        return order == 1 ? T(1) - t * t : T(-2) * t * (T(1) - t * t);
    }
    case kSigmoid: {
        T s = sigmoid(v);
        if (order == 0) return s;
        return order == 1 ? s * (T(1) - s) : s * (T(1) - s) * (T(1) - T(2) * s);
    }
    case kElu:
        if (v > T(0)) return order == 0 ? v : (order == 1 ? T(1) : T(0));
        return order == 0 ? expm1(v) : exp(v);
    case kSelu:
        if (v > T(0)) return order == 0 ? T(kSeluScale) * v : (order == 1 ? T(kSeluScale) : T(0));
        return T(kSeluScale * kSeluAlpha) * (order == 0 ? expm1(v) : exp(v));
    case kSoftplus: {
        if (v > T(kSoftplusThreshold)) return order == 0 ? v : (order == 1 ? T(1) : T(0));
        if (order == 0) return log1p(exp(v));
        T s = sigmoid(v);
        return order == 1 ? s : s * (T(1) - s);
    }
    case kSwish: {
        T s = sigmoid(v);
        if (order == 0) return v * s;
        return order == 1 ? s * (T(1) + v * (T(1) - s)) : s * (T(1) - s) * (T(2) + v * (T(1) - T(2) * s));
    }
    }
    return T(0);  // Unreachable: bias_act.cpp validates the code.
}

template <typename scalar_t>
__global__ void bias_act_kernel(scalar_t* __restrict__ y, const scalar_t* __restrict__ x,
                                const scalar_t* __restrict__ b, const scalar_t* __restrict__ g,
                                BiasActParams p) {
    using T = at::opmath_type<scalar_t>;
    const T alpha = static_cast<T>(p.alpha), gain = static_cast<T>(p.gain), clamp = static_cast<T>(p.clamp);
    const bool clamped = p.clamp >= 0;
    const int64_t step = int64_t(blockDim.x) * gridDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.numel; i += step) {
        T v = static_cast<T>(x[i]);
        if (p.bias_len > 0)
            v += static_cast<T>(b[(i / p.bias_stride) % p.bias_len]);
        if (p.mode == kBiasActForward) {
            T out = activation(p.act, 0, v, alpha) * gain;
            if (clamped)  // Written out so that NaN passes through, as in torch.clamp.
                out = out < -clamp ? -clamp : (out > clamp ? clamp : out);
            y[i] = static_cast<scalar_t>(out);
            continue;
        }
        if (clamped) {  // The gradient is zero wherever the output was clamped (torch.clamp's rule).
            T pre = activation(p.act, 0, v, alpha) * gain;
            if (!(pre >= -clamp && pre <= clamp)) {
                y[i] = static_cast<scalar_t>(T(0));
                continue;
            }
        }
        y[i] = static_cast<scalar_t>(static_cast<T>(g[i]) * activation(p.act, p.mode, v, alpha) * gain);
    }
}

}  // namespace

void bias_act_launch(at::Tensor& y, const at::Tensor& x, const at::Tensor& b, const at::Tensor& g,
                     const BiasActParams& p) {
    if (p.numel == 0)
        return;
    constexpr int kThreads = 256;
    const int64_t blocks = std::min<int64_t>((p.numel + kThreads - 1) / kThreads, 65536);
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND_HALF(x.scalar_type(), "bias_act_cuda", [&] {
        const scalar_t* b_ptr = p.bias_len > 0 ? b.data_ptr<scalar_t>() : nullptr;
        const scalar_t* g_ptr = p.mode != kBiasActForward ? g.data_ptr<scalar_t>() : nullptr;
        bias_act_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
            y.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), b_ptr, g_ptr, p);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
}
