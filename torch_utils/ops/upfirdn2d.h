// Shared between upfirdn2d.cpp (argument checks, Python binding) and upfirdn2d.cu (the kernels).
#pragma once
#include <ATen/core/Tensor.h>

// One 2-D pass, per image plane: zero-stuff by up -> pad (negative pads crop) -> correlate with the
// filter (flipped first unless flip_filter, i.e. a true convolution) times gain -> keep every down-th pixel:
//   y[oy, ox] = gain * sum_{ky,kx} f'[ky, kx] * u[oy * down_y + ky - pad_y0, ox * down_x + kx - pad_x0],
// where u[a, c] = x[a / up_y, c / up_x] when both divide exactly and lie inside x, else 0.
struct Upfirdn2dParams {
    int up_x, up_y, down_x, down_y;
    int pad_x0, pad_y0;             // the far pads only determine the output size
    int in_w, in_h, out_w, out_h;
    int filter_w, filter_h;
    int channels;
    int64_t planes;                 // batch * channels
    int64_t in_stride[4];           // strides of x (N, C, H, W), in elements
    int64_t out_stride[4];          // strides of y
    bool flip_filter;
    double gain;
};

// x: [N, C, H, W] of float16/32/64, any strides; f: contiguous float32 [filter_h, filter_w]; y preallocated.
void upfirdn2d_launch(at::Tensor& y, const at::Tensor& x, const at::Tensor& f, const Upfirdn2dParams& p);
