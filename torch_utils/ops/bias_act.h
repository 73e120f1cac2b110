// Shared between bias_act.cpp (argument checks, Python binding) and bias_act.cu (the kernel).
#pragma once
#include <ATen/core/Tensor.h>

// What the kernel computes for each element v = x + b:
//   kBiasActForward:    clamp(act(v) * gain)
//   kBiasActFirstGrad:  g * act'(v) * gain, zero where the forward output was clamped
//   kBiasActSecondGrad: g * act''(v) * gain, zero where the forward output was clamped
enum BiasActMode { kBiasActForward = 0, kBiasActFirstGrad = 1, kBiasActSecondGrad = 2 };

// Activation codes, equal to the `cuda_idx` column of the activation table in bias_act.py.
enum BiasActFunc {
    kLinear = 1, kRelu = 2, kLrelu = 3, kTanh = 4, kSigmoid = 5,
    kElu = 6, kSelu = 7, kSoftplus = 8, kSwish = 9
};

struct BiasActParams {
    int64_t numel;        // elements of x
    int64_t bias_stride;  // memory stride of the bias dimension of x
    int64_t bias_len;     // length of b, or 0 for no bias
    int mode;             // BiasActMode
    int act;              // BiasActFunc
    double alpha;         // lrelu slope
    double gain;
    double clamp;         // negative: no clamping
};

// y, x and g share one dense memory layout; b is contiguous (or empty); g is unused in forward mode.
void bias_act_launch(at::Tensor& y, const at::Tensor& x, const at::Tensor& b, const at::Tensor& g,
                     const BiasActParams& p);
