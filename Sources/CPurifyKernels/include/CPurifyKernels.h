#ifndef CPURIFYKERNELS_H
#define CPURIFYKERNELS_H

/// A stride-1, undilated, ungrouped convolution from a channel-blocked input (nChw8c or
/// nChw16c: `block` channels of one pixel side by side) to a plain NCHW output with few channels:
///
///   output[n][o][y][x] = bias[o] + sum over c, ky, kx with the input pixel inside the image of
///                        input[n][c / block][y + ky - top][x + kx - left][c % block] * weights[o][ky][kx][c]
///
/// `channels` is a multiple of `block`, and `block` is 8 or 16. Only where
/// ``purify_narrow_convolution_supported`` says so.
void purify_narrow_convolution(const float *input, const float *weights, const float *bias, float *output,
                               int batch, int channels, int block, int height, int width,
                               int outputs, int output_height, int output_width,
                               int kernel_height, int kernel_width, int top, int left);

/// Whether this CPU can run ``purify_narrow_convolution`` (it needs AVX2 and FMA).
int purify_narrow_convolution_supported(void);

#endif
