#include "CPurifyKernels.h"

#include <immintrin.h>
#include <stddef.h>

/// The taps of one output pixel that land inside the image, and where its input and weights start.
struct window {
    const float *origin;   // input pixel (y - top, x - left) of this image, possibly outside it
    const float *weights;  // this output channel's [ky][kx][channel]
    ptrdiff_t block_stride, row_stride;
    int channels, block, kernel_width;
    int row_begin, row_end, column_begin, column_end;
};

static inline int max_int(int a, int b) { return a > b ? a : b; }
static inline int min_int(int a, int b) { return a < b ? a : b; }

/// One output pixel's weighted sum over its window, without the bias.
__attribute__((target("avx2,fma")))
static float window_sum(const struct window *w) {
    const int shift = w->block == 16 ? 4 : 3;
    // Four partial sums, so that the multiply-adds do not wait on each other.
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    for (int row = w->row_begin; row < w->row_end; row++) {
        for (int column = w->column_begin; column < w->column_end; column++) {
            const float *pixel = w->origin + row * w->row_stride + (ptrdiff_t)column * w->block;
            const float *tap = w->weights + ((ptrdiff_t)row * w->kernel_width + column) * w->channels;
#define AT(c) (pixel + (ptrdiff_t)((c) >> shift) * w->block_stride + ((c) & (w->block - 1)))
            int c = 0;
            for (; c + 32 <= w->channels; c += 32) {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(AT(c)), _mm256_loadu_ps(tap + c), s0);
                s1 = _mm256_fmadd_ps(_mm256_loadu_ps(AT(c + 8)), _mm256_loadu_ps(tap + c + 8), s1);
                s2 = _mm256_fmadd_ps(_mm256_loadu_ps(AT(c + 16)), _mm256_loadu_ps(tap + c + 16), s2);
                s3 = _mm256_fmadd_ps(_mm256_loadu_ps(AT(c + 24)), _mm256_loadu_ps(tap + c + 24), s3);
            }
            for (; c < w->channels; c += 8) {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(AT(c)), _mm256_loadu_ps(tap + c), s0);
            }
#undef AT
        }
    }
    const __m256 sum = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    half = _mm_hadd_ps(half, half);
    half = _mm_hadd_ps(half, half);
    return _mm_cvtss_f32(half);
}

__attribute__((target("avx2,fma")))
void purify_narrow_convolution(const float *input, const float *weights, const float *bias, float *output,
                               int batch, int channels, int block, int height, int width,
                               int outputs, int output_height, int output_width,
                               int kernel_height, int kernel_width, int top, int left) {
    struct window window = {
        .block_stride = (ptrdiff_t)height * width * block, .row_stride = (ptrdiff_t)width * block,
        .channels = channels, .block = block, .kernel_width = kernel_width,
    };
    for (int n = 0; n < batch; n++) {
        const float *image = input + n * window.block_stride * (channels / block);
        for (int o = 0; o < outputs; o++) {
            window.weights = weights + (ptrdiff_t)o * kernel_height * kernel_width * channels;
            for (int y = 0; y < output_height; y++) {
                window.row_begin = max_int(0, top - y);
                window.row_end = min_int(kernel_height, height + top - y);
                for (int x = 0; x < output_width; x++) {
                    window.column_begin = max_int(0, left - x);
                    window.column_end = min_int(kernel_width, width + left - x);
                    window.origin = image + (ptrdiff_t)(y - top) * window.row_stride + (ptrdiff_t)(x - left) * block;
                    *output++ = window_sum(&window) + bias[o];
                }
            }
        }
    }
}

int purify_narrow_convolution_supported(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
