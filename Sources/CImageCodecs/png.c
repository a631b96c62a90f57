/*
 * PNG through libpng's simplified API (png_image), which handles its own setjmp internally and
 * reports failures as a message in the png_image. libpng gives no error codes, so the message
 * is classified here, in one place.
 */
#include "CImageCodecs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <zlib.h>

static pcodec_status pcodec_png_classify(const char *message) {
    if (strstr(message, "beyond end of data") != NULL) {
        return PCODEC_TRUNCATED;
    }
    if (strstr(message, "out of memory") != NULL || strstr(message, "Out of memory") != NULL ||
        strstr(message, "Insufficient memory") != NULL) {
        return PCODEC_OUT_OF_MEMORY;
    }
    if (strstr(message, "exceeds user limit") != NULL || strstr(message, "too large") != NULL ||
        strstr(message, "too wide") != NULL) {
        return PCODEC_TOO_LARGE;
    }
    return PCODEC_CORRUPT;
}

static pcodec_status pcodec_png_fail(png_image *image, char *message, size_t message_capacity) {
    pcodec_status status = pcodec_png_classify(image->message);
    snprintf(message, message_capacity, "%s", image->message);
    png_image_free(image);
    return status;
}

static uint32_t pcodec_png_channels(png_uint_32 format) {
    return ((format & PNG_FORMAT_FLAG_COLOR) ? 3u : 1u) + ((format & PNG_FORMAT_FLAG_ALPHA) ? 1u : 0u);
}

static png_uint_32 pcodec_png_format(uint32_t channels) {
    switch (channels) {
    case 1: return PNG_FORMAT_GRAY;
    case 2: return PNG_FORMAT_GA;
    case 3: return PNG_FORMAT_RGB;
    default: return PNG_FORMAT_RGBA;
    }
}

pcodec_status pcodec_png_read_header(const uint8_t *data, size_t size, pcodec_image_info *info,
                                     char *message, size_t message_capacity) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, data, size)) {
        return pcodec_png_fail(&image, message, message_capacity);
    }
    info->width = image.width;
    info->height = image.height;
    info->channels = pcodec_png_channels(image.format);
    png_image_free(&image);
    return PCODEC_OK;
}

static uint32_t pcodec_be32(const uint8_t *bytes) {
    return (uint32_t)bytes[0] << 24 | (uint32_t)bytes[1] << 16 | (uint32_t)bytes[2] << 8 | bytes[3];
}

static int pcodec_png_chunk_type_is_valid(const uint8_t *type) {
    for (int i = 0; i < 4; i++) {
        uint8_t c = type[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) {
            return 0;
        }
    }
    return 1;
}

/* Chunks that make libpng's simplified reader convert samples to sRGB. */
static int pcodec_png_is_colorimetry(const uint8_t *type) {
    return memcmp(type, "gAMA", 4) == 0 || memcmp(type, "cHRM", 4) == 0 ||
           memcmp(type, "sRGB", 4) == 0 || memcmp(type, "iCCP", 4) == 0;
}

/* libpng's simplified reader stops as soon as it has the pixels: it never reads IEND, and an
 * IDAT CRC is only checked when inflating did not fail first. Walking the chunk structure
 * first makes a file cut anywhere `truncated` and a damaged chunk `corrupt` (CRC mismatch).
 * On success `*colorimetry_bytes` is the size of the colorimetry chunks in the file. */
static pcodec_status pcodec_png_check_chunks(const uint8_t *data, size_t size,
                                             size_t *colorimetry_bytes, char *message,
                                             size_t message_capacity) {
    *colorimetry_bytes = 0;
    size_t offset = 8; /* after the signature */
    while (size - offset >= 8) {
        uint32_t length = pcodec_be32(data + offset);
        const uint8_t *type = data + offset + 4;
        if (length > 0x7FFFFFFFu || !pcodec_png_chunk_type_is_valid(type)) {
            snprintf(message, message_capacity, "invalid chunk header at offset %zu", offset);
            return PCODEC_CORRUPT;
        }
        if (size - offset - 8 < (size_t)length + 4) {
            snprintf(message, message_capacity, "the data ends inside chunk %.4s",
                     (const char *)type);
            return PCODEC_TRUNCATED;
        }
        uLong crc = crc32(0L, type, (uInt)length + 4);
        if (crc != pcodec_be32(type + 4 + length)) {
            snprintf(message, message_capacity, "chunk %.4s: CRC mismatch", (const char *)type);
            return PCODEC_CORRUPT;
        }
        if (memcmp(type, "IEND", 4) == 0) {
            return PCODEC_OK;
        }
        if (pcodec_png_is_colorimetry(type)) {
            *colorimetry_bytes += (size_t)length + 12;
        }
        offset += (size_t)length + 12;
    }
    snprintf(message, message_capacity, "the data ends before the IEND chunk");
    return PCODEC_TRUNCATED;
}

/* A malloc'ed copy of a checked PNG stream without its colorimetry chunks, up to IEND. */
static uint8_t *pcodec_png_without_colorimetry(const uint8_t *data, size_t size,
                                               size_t *copy_size) {
    uint8_t *copy = malloc(size);
    if (copy == NULL) {
        return NULL;
    }
    memcpy(copy, data, 8);
    size_t written = 8, offset = 8;
    for (;;) {
        size_t chunk_size = (size_t)pcodec_be32(data + offset) + 12;
        const uint8_t *type = data + offset + 4;
        if (!pcodec_png_is_colorimetry(type)) {
            memcpy(copy + written, data + offset, chunk_size);
            written += chunk_size;
        }
        if (memcmp(type, "IEND", 4) == 0) {
            break;
        }
        offset += chunk_size;
    }
    *copy_size = written;
    return copy;
}

static pcodec_status pcodec_png_decode_checked(const uint8_t *data, size_t size,
                                               const pcodec_image_info *info, uint8_t *pixels,
                                               size_t row_stride, char *message,
                                               size_t message_capacity) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, data, size)) {
        return pcodec_png_fail(&image, message, message_capacity);
    }
    if (image.width != info->width || image.height != info->height || info->channels < 1 ||
        info->channels > 4 || row_stride < (size_t)info->width * info->channels ||
        row_stride > INT32_MAX) {
        png_image_free(&image);
        snprintf(message, message_capacity, "PNG header does not match the output buffer");
        return PCODEC_INVALID_ARGUMENT;
    }
    image.format = pcodec_png_format(info->channels);
    /* Without this, a 16-bit file would be taken as linear light and gamma-encoded on the way
     * to 8 bits; here its samples are simply scaled. */
    image.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;
    if (!png_image_finish_read(&image, NULL, pixels, (png_int_32)row_stride, NULL)) {
        return pcodec_png_fail(&image, message, message_capacity);
    }
    png_image_free(&image);
    return PCODEC_OK;
}

pcodec_status pcodec_png_decode(const uint8_t *data, size_t size, const pcodec_image_info *info,
                                uint8_t *pixels, size_t row_stride,
                                char *message, size_t message_capacity) {
    if (size < 8) {
        snprintf(message, message_capacity, "the data ends inside the signature");
        return PCODEC_TRUNCATED;
    }
    size_t colorimetry_bytes;
    pcodec_status status =
        pcodec_png_check_chunks(data, size, &colorimetry_bytes, message, message_capacity);
    if (status != PCODEC_OK) {
        return status;
    }
    if (colorimetry_bytes == 0) {
        return pcodec_png_decode_checked(data, size, info, pixels, row_stride, message,
                                         message_capacity);
    }
    /* The simplified reader would convert samples to sRGB per gAMA/cHRM/iCCP; decoding a copy
     * without those chunks keeps the stored samples, as Pillow (and so PyTorch) reads them. */
    size_t copy_size;
    uint8_t *copy = pcodec_png_without_colorimetry(data, size, &copy_size);
    if (copy == NULL) {
        snprintf(message, message_capacity, "out of memory for a copy of the PNG data");
        return PCODEC_OUT_OF_MEMORY;
    }
    status = pcodec_png_decode_checked(copy, copy_size, info, pixels, row_stride, message,
                                       message_capacity);
    free(copy);
    return status;
}

pcodec_status pcodec_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height,
                                uint32_t channels, size_t row_stride, int fast,
                                uint8_t **output, size_t *output_size,
                                char *message, size_t message_capacity) {
    *output = NULL;
    *output_size = 0;
    if (channels < 1 || channels > 4 || width == 0 || height == 0 ||
        row_stride < (size_t)width * channels || row_stride > INT32_MAX) {
        snprintf(message, message_capacity,
                 "PNG encoding needs 1 to 4 channels and a non-empty image");
        return PCODEC_INVALID_ARGUMENT;
    }
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = width;
    image.height = height;
    image.format = pcodec_png_format(channels);
    image.flags = fast ? PNG_IMAGE_FLAG_FAST : 0;

    /* An upper bound for the whole stream, so that one compression pass suffices. */
    png_alloc_size_t capacity = PNG_IMAGE_PNG_SIZE_MAX(image);
    uint8_t *buffer = malloc(capacity);
    if (buffer == NULL) {
        snprintf(message, message_capacity, "out of memory for the PNG output");
        return PCODEC_OUT_OF_MEMORY;
    }
    png_alloc_size_t size = capacity;
    if (!png_image_write_to_memory(&image, buffer, &size, 0, pixels, (png_int_32)row_stride,
                                   NULL)) {
        free(buffer);
        pcodec_status status = pcodec_png_fail(&image, message, message_capacity);
        return status == PCODEC_CORRUPT ? PCODEC_FAILED : status;
    }
    png_image_free(&image);
    *output = buffer;
    *output_size = size;
    return PCODEC_OK;
}
