#include "CPurifyKernels.h"

#include <immintrin.h>
#include <stddef.h>

static inline int max_int(int a, int b) { return a > b ? a : b; }
static inline int min_int(int a, int b) { return a < b ? a : b; }

/// Where channel `c` of a pixel lies, in floats from the pixel's first channel.
static inline ptrdiff_t channel_offset(int c, int block, ptrdiff_t block_stride) {
    return (ptrdiff_t)(c / block) * block_stride + c % block;
}

__attribute__((target("avx2,fma")))
static void narrow_convolution_avx2(const float *input, const float *weights, const float *bias, float *output,
                                    int batch, int channels, int block, int height, int width,
                                    int outputs, int output_height, int output_width,
                                    int kernel_height, int kernel_width, int top, int left) {
    const ptrdiff_t block_stride = (ptrdiff_t)height * width * block;
    const ptrdiff_t image_stride = block_stride * (channels / block);
    const int shift = block == 16 ? 4 : 3;
    for (int n = 0; n < batch; n++) {
        const float *image = input + n * image_stride;
        for (int o = 0; o < outputs; o++) {
            const float *output_weights = weights + (ptrdiff_t)o * kernel_height * kernel_width * channels;
            for (int y = 0; y < output_height; y++) {
                const int row_begin = max_int(0, top - y), row_end = min_int(kernel_height, height + top - y);
                for (int x = 0; x < output_width; x++) {
                    const int column_begin = max_int(0, left - x), column_end = min_int(kernel_width, width + left - x);
                    // Four partial sums, so that the multiply-adds do not wait on each other.
                    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
                    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
                    for (int row = row_begin; row < row_end; row++) {
                        for (int column = column_begin; column < column_end; column++) {
                            const float *pixel = image + ((ptrdiff_t)(y + row - top) * width + (x + column - left)) * block;
                            const float *tap = output_weights + ((ptrdiff_t)row * kernel_width + column) * channels;
#define AT(c) (pixel + (ptrdiff_t)((c) >> shift) * block_stride + ((c) & (block - 1)))
                            int c = 0;
                            for (; c + 32 <= channels; c += 32) {
                                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(AT(c)), _mm256_loadu_ps(tap + c), s0);
                                s1 = _mm256_fmadd_ps(_mm256_loadu_ps(AT(c + 8)), _mm256_loadu_ps(tap + c + 8), s1);
                                s2 = _mm256_fmadd_ps(_mm256_loadu_ps(AT(c + 16)), _mm256_loadu_ps(tap + c + 16), s2);
                                s3 = _mm256_fmadd_ps(_mm256_loadu_ps(AT(c + 24)), _mm256_loadu_ps(tap + c + 24), s3);
                            }
                            for (; c < channels; c += 8) {
                                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(AT(c)), _mm256_loadu_ps(tap + c), s0);
                            }
#undef AT
                        }
                    }
                    const __m256 sum = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
                    __m128 half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
                    half = _mm_hadd_ps(half, half);
                    half = _mm_hadd_ps(half, half);
                    *output++ = _mm_cvtss_f32(half) + bias[o];
                }
            }
        }
    }
}

static void narrow_convolution_portable(const float *input, const float *weights, const float *bias, float *output,
                                        int batch, int channels, int block, int height, int width,
                                        int outputs, int output_height, int output_width,
                                        int kernel_height, int kernel_width, int top, int left) {
    const ptrdiff_t block_stride = (ptrdiff_t)height * width * block;
    const ptrdiff_t image_stride = block_stride * (channels / block);
    for (int n = 0; n < batch; n++) {
        const float *image = input + n * image_stride;
        for (int o = 0; o < outputs; o++) {
            const float *output_weights = weights + (ptrdiff_t)o * kernel_height * kernel_width * channels;
            for (int y = 0; y < output_height; y++) {
                const int row_begin = max_int(0, top - y), row_end = min_int(kernel_height, height + top - y);
                for (int x = 0; x < output_width; x++) {
                    const int column_begin = max_int(0, left - x), column_end = min_int(kernel_width, width + left - x);
                    float sum = 0;
                    for (int row = row_begin; row < row_end; row++) {
                        for (int column = column_begin; column < column_end; column++) {
                            const float *pixel = image + ((ptrdiff_t)(y + row - top) * width + (x + column - left)) * block;
                            const float *tap = output_weights + ((ptrdiff_t)row * kernel_width + column) * channels;
                            for (int c = 0; c < channels; c++) sum += pixel[channel_offset(c, block, block_stride)] * tap[c];
                        }
                    }
                    *output++ = sum + bias[o];
                }
            }
        }
    }
}

void purify_narrow_convolution(const float *input, const float *weights, const float *bias, float *output,
                               int batch, int channels, int block, int height, int width,
                               int outputs, int output_height, int output_width,
                               int kernel_height, int kernel_width, int top, int left) {
    const int has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    (has_avx2 ? narrow_convolution_avx2 : narrow_convolution_portable)(
        input, weights, bias, output, batch, channels, block, height, width, outputs, output_height, output_width,
        kernel_height, kernel_width, top, left);
}
