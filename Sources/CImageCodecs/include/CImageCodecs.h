/*
 * CImageCodecs: thin, prefixed shims over libjpeg(-turbo) and libpng's simplified API.
 *
 * Every libjpeg error and warning is caught inside C (setjmp/longjmp never crosses into Swift);
 * libjpeg warnings such as "Premature end of JPEG file" are failures, not successes with grey
 * fill. No function here prints anything or exits the process.
 *
 * Decoding is two-phase so that the caller can enforce its limits from the header before any
 * pixel buffer exists: `*_read_header` parses the header only; `*_decode` parses it again and
 * writes 8-bit interleaved pixels into the caller's buffer.
 *
 * `message` points to `message_capacity` bytes (or is NULL with a capacity of 0); on failure it
 * receives a NUL-terminated reason.
 */
#ifndef PCODEC_IMAGE_CODECS_H
#define PCODEC_IMAGE_CODECS_H

#include <stddef.h>
#include <stdint.h>

/* Outcome of a codec call. */
typedef enum pcodec_status {
    PCODEC_OK = 0,
    PCODEC_TRUNCATED = 1,     /* the data ends before the image does */
    PCODEC_CORRUPT = 2,       /* malformed data: bad marker, Huffman code, CRC, ... */
    PCODEC_UNSUPPORTED = 3,   /* valid but not handled: 12-bit JPEG, unknown color space, ... */
    PCODEC_TOO_LARGE = 4,     /* beyond what the codec library itself accepts */
    PCODEC_OUT_OF_MEMORY = 5,
    PCODEC_INVALID_ARGUMENT = 6,
    PCODEC_FAILED = 7         /* any other library failure (encoding) */
} pcodec_status;

/* What a header says about the decoded image. */
typedef struct pcodec_image_info {
    uint32_t width;
    uint32_t height;
    /* Channels `*_decode` produces: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA. */
    uint32_t channels;
} pcodec_image_info;

/* Progressive JPEGs with more scans than this are refused (a known CPU-exhaustion vector). */
#define PCODEC_JPEG_MAX_SCANS 500

/* JPEG: gray decodes to 1 channel; YCbCr and RGB to RGB; CMYK and YCCK are converted to RGB
 * (Adobe-inverted CMYK, as Photoshop and Pillow write it, is recognised by its APP14 marker). */
pcodec_status pcodec_jpeg_read_header(const uint8_t *data, size_t size, pcodec_image_info *info,
                                      char *message, size_t message_capacity);

/* Decodes into `pixels` (`height` rows of `row_stride` bytes). `info` must be what
 * pcodec_jpeg_read_header returned for the same data. */
pcodec_status pcodec_jpeg_decode(const uint8_t *data, size_t size, const pcodec_image_info *info,
                                 uint8_t *pixels, size_t row_stride,
                                 char *message, size_t message_capacity);

/* Encodes 1-channel (gray) or 3-channel (RGB) pixels. `quality` is 1...100; `subsample_chroma`
 * selects 4:2:0 (else 4:4:4); `progressive` writes a progressive JPEG. On success `*output`
 * is a malloc'ed buffer of `*output_size` bytes that the caller releases with pcodec_free. */
pcodec_status pcodec_jpeg_encode(const uint8_t *pixels, uint32_t width, uint32_t height,
                                 uint32_t channels, size_t row_stride, int quality,
                                 int subsample_chroma, int progressive,
                                 uint8_t **output, size_t *output_size,
                                 char *message, size_t message_capacity);

/* PNG: gray, gray+alpha, RGB, RGBA and palette images, any bit depth; 16-bit samples are scaled
 * to 8 bits; tRNS becomes an alpha channel; palette images decode to RGB or RGBA. Samples are
 * kept as stored: gAMA, cHRM, sRGB and iCCP chunks are ignored (as Pillow does), not applied.
 * pcodec_png_decode first checks the chunk structure up to IEND (lengths and CRCs), which
 * libpng's simplified reader skips. */
pcodec_status pcodec_png_read_header(const uint8_t *data, size_t size, pcodec_image_info *info,
                                     char *message, size_t message_capacity);

pcodec_status pcodec_png_decode(const uint8_t *data, size_t size, const pcodec_image_info *info,
                                uint8_t *pixels, size_t row_stride,
                                char *message, size_t message_capacity);

/* Encodes 8-bit pixels with 1 to 4 channels (gray, gray+alpha, RGB, RGBA) losslessly. `fast`
 * trades file size for speed. Output ownership as for pcodec_jpeg_encode. */
pcodec_status pcodec_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height,
                                uint32_t channels, size_t row_stride, int fast,
                                uint8_t **output, size_t *output_size,
                                char *message, size_t message_capacity);

/* Releases a buffer returned by an encoder. */
void pcodec_free(void *buffer);

#endif /* PCODEC_IMAGE_CODECS_H */
