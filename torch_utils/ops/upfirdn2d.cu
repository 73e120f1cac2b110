// upfirdn2d kernels: a generic one (any up/down/padding/filter, one thread per output pixel) and a
// shared-memory tiled one for the common StyleGAN cases (up 2, down 2 or plain filtering, taps <= 8).

#include <algorithm>
#include <type_traits>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "upfirdn2d.h"

namespace {

// Floor division and the matching non-negative remainder, for possibly negative a (b > 0).
__device__ __forceinline__ int floor_div(int a, int b) { return (a >= 0 ? a : a - b + 1) / b; }
__device__ __forceinline__ int pos_mod(int a, int b) { return ((a % b) + b) % b; }

// Tap (ky, kx) of the filter as the correlation uses it: f itself when flip_filter, else f rotated 180 degrees.
__device__ __forceinline__ float filter_tap(const float* f, const Upfirdn2dParams& p, int ky, int kx) {
    if (!p.flip_filter) {
        ky = p.filter_h - 1 - ky;
        kx = p.filter_w - 1 - kx;
    }
    return f[ky * p.filter_w + kx];
}

template <typename scalar_t>
__global__ void upfirdn2d_generic_kernel(scalar_t* __restrict__ y, const scalar_t* __restrict__ x,
                                         const float* __restrict__ f, Upfirdn2dParams p) {
    using T = at::opmath_type<scalar_t>;
    const int64_t total = p.planes * p.out_h * p.out_w;
    const int64_t step = int64_t(blockDim.x) * gridDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
        const int ox = int(i % p.out_w);
        const int oy = int((i / p.out_w) % p.out_h);
        const int64_t plane = i / (int64_t(p.out_w) * p.out_h);
        const int64_t n = plane / p.channels, c = plane % p.channels;
        const scalar_t* xp = x + n * p.in_stride[0] + c * p.in_stride[1];
        // Upsampled coordinates of tap 0; only taps landing on a multiple of up hit a real pixel.
        const int ux = ox * p.down_x - p.pad_x0, uy = oy * p.down_y - p.pad_y0;
        T acc = T(0);
        for (int ky = pos_mod(-uy, p.up_y); ky < p.filter_h; ky += p.up_y) {
            const int iy = (uy + ky) / p.up_y;  // exact division
            if (iy < 0 || iy >= p.in_h)
                continue;
            for (int kx = pos_mod(-ux, p.up_x); kx < p.filter_w; kx += p.up_x) {
                const int ix = (ux + kx) / p.up_x;
                if (ix < 0 || ix >= p.in_w)
                    continue;
                const scalar_t pixel = xp[iy * p.in_stride[2] + ix * p.in_stride[3]];
                acc += static_cast<T>(filter_tap(f, p, ky, kx)) * static_cast<T>(pixel);
            }
        }
        y[n * p.out_stride[0] + c * p.out_stride[1] + oy * p.out_stride[2] + ox * p.out_stride[3]] =
            static_cast<scalar_t>(acc * static_cast<T>(p.gain));
    }
}

constexpr int kTileOut = 32;   // output tile is kTileOut x kTileOut pixels per block
constexpr int kTileMaxTaps = 8;  // largest filter side the tiled kernel accepts
constexpr int kTileThreads = 256;

// Input pixels one output tile reads along an axis (see the bound in the kernel's comment).
__host__ __device__ constexpr int tile_in(int up, int down) {
    return ((kTileOut - 1) * down + kTileMaxTaps - 1) / up + 2;
}

// One block: a kTileOut^2 output tile of every plane it visits (grid z strides over planes).
// The input window and the gain-scaled, pre-flipped filter are staged in shared memory as float.
template <typename scalar_t, int UP, int DOWN>
__global__ void upfirdn2d_tiled_kernel(scalar_t* __restrict__ y, const scalar_t* __restrict__ x,
                                       const float* __restrict__ f, Upfirdn2dParams p) {
    constexpr int kInW = tile_in(UP, DOWN), kInH = tile_in(UP, DOWN);
    __shared__ float taps[kTileMaxTaps][kTileMaxTaps];
    __shared__ float window[kInH][kInW];
    for (int i = threadIdx.x; i < kTileMaxTaps * kTileMaxTaps; i += blockDim.x) {
        const int ky = i / kTileMaxTaps, kx = i % kTileMaxTaps;
        taps[ky][kx] = (ky < p.filter_h && kx < p.filter_w) ? filter_tap(f, p, ky, kx) * float(p.gain) : 0.0f;
    }
    const int ox0 = blockIdx.x * kTileOut, oy0 = blockIdx.y * kTileOut;
    // Window origin: the input pixel under tap 0 of the tile's first output (floored).
    // For any output in the tile, (u + k) / UP - origin <= ((kTileOut-1)*DOWN + taps-1) / UP + 1 < tile_in.
    const int ix0 = floor_div(ox0 * DOWN - p.pad_x0, UP), iy0 = floor_div(oy0 * DOWN - p.pad_y0, UP);
    for (int64_t plane = blockIdx.z; plane < p.planes; plane += gridDim.z) {
        const int64_t n = plane / p.channels, c = plane % p.channels;
        const scalar_t* xp = x + n * p.in_stride[0] + c * p.in_stride[1];
        __syncthreads();  // the previous plane's window (and the taps, first time) are done with
        for (int i = threadIdx.x; i < kInH * kInW; i += blockDim.x) {
            const int r = i / kInW, q = i % kInW, iy = iy0 + r, ix = ix0 + q;
            const bool inside = iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w;
            window[r][q] = inside ? static_cast<float>(xp[iy * p.in_stride[2] + ix * p.in_stride[3]]) : 0.0f;
        }
        __syncthreads();
        for (int i = threadIdx.x; i < kTileOut * kTileOut; i += blockDim.x) {
            const int ox = ox0 + i % kTileOut, oy = oy0 + i / kTileOut;
            if (ox >= p.out_w || oy >= p.out_h)
                continue;
            const int ux = ox * DOWN - p.pad_x0, uy = oy * DOWN - p.pad_y0;
            float acc = 0.0f;
            for (int ky = pos_mod(-uy, UP); ky < p.filter_h; ky += UP) {
                const float* row = window[(uy + ky) / UP - iy0];
                for (int kx = pos_mod(-ux, UP); kx < p.filter_w; kx += UP)
                    acc += taps[ky][kx] * row[(ux + kx) / UP - ix0];
            }
            const int64_t out = n * p.out_stride[0] + c * p.out_stride[1] + oy * p.out_stride[2] + ox * p.out_stride[3];
            y[out] = static_cast<scalar_t>(acc);
        }
    }
}

template <typename scalar_t, int UP, int DOWN>
void launch_tiled(at::Tensor& y, const at::Tensor& x, const at::Tensor& f, const Upfirdn2dParams& p,
                  cudaStream_t stream) {
    const dim3 grid((p.out_w + kTileOut - 1) / kTileOut, (p.out_h + kTileOut - 1) / kTileOut,
                    unsigned(std::min<int64_t>(p.planes, 65535)));
    upfirdn2d_tiled_kernel<scalar_t, UP, DOWN><<<grid, kTileThreads, 0, stream>>>(
        y.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), f.data_ptr<float>(), p);
}

// Runs the tiled kernel when one instantiation covers p; returns false otherwise.
template <typename scalar_t>
bool try_tiled(at::Tensor& y, const at::Tensor& x, const at::Tensor& f, const Upfirdn2dParams& p, cudaStream_t stream) {
    if (p.filter_w > kTileMaxTaps || p.filter_h > kTileMaxTaps || p.up_x != p.up_y || p.down_x != p.down_y)
        return false;
    if (p.up_x == 1 && p.down_x == 1)
        launch_tiled<scalar_t, 1, 1>(y, x, f, p, stream);
    else if (p.up_x == 2 && p.down_x == 1)
        launch_tiled<scalar_t, 2, 1>(y, x, f, p, stream);
    else if (p.up_x == 1 && p.down_x == 2)
        launch_tiled<scalar_t, 1, 2>(y, x, f, p, stream);
    else
        return false;
    return true;
}

}  // namespace

void upfirdn2d_launch(at::Tensor& y, const at::Tensor& x, const at::Tensor& f, const Upfirdn2dParams& p) {
    if (y.numel() == 0)
        return;
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND_HALF(x.scalar_type(), "upfirdn2d_cuda", [&] {
        // Double stays on the generic kernel, which accumulates in double (useful for gradcheck).
        bool tiled = false;
        if constexpr (!std::is_same_v<scalar_t, double>)
            tiled = try_tiled<scalar_t>(y, x, f, p, stream);
        if (!tiled) {
            constexpr int kThreads = 256;
            const int64_t total = y.numel();
            const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, 65536);
            upfirdn2d_generic_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
                y.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), f.data_ptr<float>(), p);
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
}
