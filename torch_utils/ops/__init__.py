"""Custom ops: exact reference paths in plain PyTorch, and fused CUDA kernels of our own."""
