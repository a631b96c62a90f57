/*
 * JPEG through libjpeg(-turbo). libjpeg reports errors by calling error_exit, whose default
 * calls exit(); here error_exit and warnings longjmp back to the guarded function that called
 * setjmp. Each guarded function keeps all of its state in a struct owned by its caller, so no
 * automatic variable of the setjmp frame is read after a longjmp.
 */
#include "CImageCodecs.h"

#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

struct pcodec_jpeg_error {
    struct jpeg_error_mgr base;
    jmp_buf escape;
    pcodec_status status;
    char message[JMSG_LENGTH_MAX];
};

static pcodec_status pcodec_jpeg_classify(int code, boolean decompressing) {
    switch (code) {
    case JWRN_JPEG_EOF:
    case JERR_INPUT_EOF:
    case JERR_INPUT_EMPTY:
        return PCODEC_TRUNCATED;
    case JERR_OUT_OF_MEMORY:
        return PCODEC_OUT_OF_MEMORY;
    case JERR_IMAGE_TOO_BIG:
    case JERR_WIDTH_OVERFLOW:
        return PCODEC_TOO_LARGE;
    case JERR_BAD_PRECISION:
    case JERR_CONVERSION_NOTIMPL:
    case JERR_NOT_COMPILED:
    case JERR_NOTIMPL:
    case JERR_EMPTY_IMAGE:
        return PCODEC_UNSUPPORTED;
    default:
        return decompressing ? PCODEC_CORRUPT : PCODEC_FAILED;
    }
}

static void pcodec_jpeg_fail(j_common_ptr cinfo) {
    struct pcodec_jpeg_error *error = (struct pcodec_jpeg_error *)cinfo->err;
    error->status = pcodec_jpeg_classify(error->base.msg_code, cinfo->is_decompressor);
    (*error->base.format_message)(cinfo, error->message);
    longjmp(error->escape, 1);
}

/* Warnings (level -1) are failures: a truncated or damaged file must not decode to grey fill.
 * Trace messages (level >= 0) are ignored. */
static void pcodec_jpeg_emit_message(j_common_ptr cinfo, int level) {
    if (level < 0) {
        pcodec_jpeg_fail(cinfo);
    }
}

static void pcodec_jpeg_output_message(j_common_ptr cinfo) {
    (void)cinfo;
}

static void pcodec_jpeg_error_init(struct pcodec_jpeg_error *error) {
    jpeg_std_error(&error->base);
    error->base.error_exit = pcodec_jpeg_fail;
    error->base.emit_message = pcodec_jpeg_emit_message;
    error->base.output_message = pcodec_jpeg_output_message;
    error->status = PCODEC_OK;
    error->message[0] = '\0';
}

static void pcodec_copy_message(char *destination, size_t capacity, const char *message) {
    if (destination != NULL && capacity > 0) {
        snprintf(destination, capacity, "%s", message);
    }
}

/* ---- decoding ---------------------------------------------------------------------------- */

struct pcodec_jpeg_decoder {
    struct jpeg_decompress_struct cinfo;
    struct pcodec_jpeg_error error;
    struct jpeg_progress_mgr progress;
};

/* Refuses progressive files with absurd scan counts before they burn CPU. */
static void pcodec_jpeg_progress(j_common_ptr cinfo) {
    j_decompress_ptr dinfo = (j_decompress_ptr)cinfo;
    if (dinfo->progressive_mode && dinfo->input_scan_number > PCODEC_JPEG_MAX_SCANS) {
        struct pcodec_jpeg_error *error = (struct pcodec_jpeg_error *)cinfo->err;
        error->status = PCODEC_CORRUPT;
        snprintf(error->message, sizeof error->message,
                 "progressive JPEG has more than %d scans", PCODEC_JPEG_MAX_SCANS);
        longjmp(error->escape, 1);
    }
}

/* Reads the header and chooses the output color space. Runs under the caller's setjmp. */
static pcodec_status pcodec_jpeg_start(struct pcodec_jpeg_decoder *decoder, const uint8_t *data,
                                       size_t size, pcodec_image_info *info) {
    j_decompress_ptr cinfo = &decoder->cinfo;
    jpeg_create_decompress(cinfo);
    decoder->progress.progress_monitor = pcodec_jpeg_progress;
    cinfo->progress = &decoder->progress;
    jpeg_mem_src(cinfo, data, (unsigned long)size);
    jpeg_read_header(cinfo, TRUE);

    switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE:
        cinfo->out_color_space = JCS_GRAYSCALE;
        info->channels = 1;
        break;
    case JCS_YCbCr:
    case JCS_RGB:
        cinfo->out_color_space = JCS_RGB;
        info->channels = 3;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        /* libjpeg turns YCCK into CMYK; CMYK -> RGB happens row by row below. */
        cinfo->out_color_space = JCS_CMYK;
        info->channels = 3;
        break;
    default:
        snprintf(decoder->error.message, sizeof decoder->error.message,
                 "JPEG with %d components in an unknown color space is not supported",
                 cinfo->num_components);
        return PCODEC_UNSUPPORTED;
    }
    jpeg_calc_output_dimensions(cinfo);
    info->width = cinfo->output_width;
    info->height = cinfo->output_height;
    return PCODEC_OK;
}

static pcodec_status pcodec_jpeg_read_header_guarded(struct pcodec_jpeg_decoder *decoder,
                                                     const uint8_t *data, size_t size,
                                                     pcodec_image_info *info) {
    if (setjmp(decoder->error.escape)) {
        return decoder->error.status;
    }
    return pcodec_jpeg_start(decoder, data, size, info);
}

/* Converts one row of CMYK samples to RGB. Adobe files (APP14) store inverted CMYK, i.e. the
 * samples are 255 - ink; plain CMYK stores ink. R = (255 - C)(255 - K) / 255, and so on. */
static void pcodec_cmyk_row_to_rgb(const JSAMPLE *cmyk, uint8_t *rgb, JDIMENSION width,
                                   boolean adobe_inverted) {
    for (JDIMENSION x = 0; x < width; x++, cmyk += 4, rgb += 3) {
        unsigned c = cmyk[0], m = cmyk[1], y = cmyk[2], k = cmyk[3];
        if (!adobe_inverted) {
            c = 255 - c;
            m = 255 - m;
            y = 255 - y;
            k = 255 - k;
        }
        rgb[0] = (uint8_t)((c * k + 127) / 255);
        rgb[1] = (uint8_t)((m * k + 127) / 255);
        rgb[2] = (uint8_t)((y * k + 127) / 255);
    }
}

static pcodec_status pcodec_jpeg_decode_guarded(struct pcodec_jpeg_decoder *decoder,
                                                const uint8_t *data, size_t size,
                                                const pcodec_image_info *expected,
                                                uint8_t *pixels, size_t row_stride) {
    if (setjmp(decoder->error.escape)) {
        return decoder->error.status;
    }
    j_decompress_ptr cinfo = &decoder->cinfo;
    pcodec_image_info info;
    pcodec_status status = pcodec_jpeg_start(decoder, data, size, &info);
    if (status != PCODEC_OK) {
        return status;
    }
    if (info.width != expected->width || info.height != expected->height ||
        info.channels != expected->channels ||
        row_stride < (size_t)info.width * info.channels) {
        snprintf(decoder->error.message, sizeof decoder->error.message,
                 "JPEG header does not match the output buffer");
        return PCODEC_INVALID_ARGUMENT;
    }
    jpeg_start_decompress(cinfo);

    if (cinfo->out_color_space == JCS_CMYK) {
        JSAMPARRAY row = (*cinfo->mem->alloc_sarray)((j_common_ptr)cinfo, JPOOL_IMAGE,
                                                     cinfo->output_width * 4, 1);
        while (cinfo->output_scanline < cinfo->output_height) {
            uint8_t *destination = pixels + (size_t)cinfo->output_scanline * row_stride;
            jpeg_read_scanlines(cinfo, row, 1);
            pcodec_cmyk_row_to_rgb(row[0], destination, cinfo->output_width,
                                   cinfo->saw_Adobe_marker);
        }
    } else {
        enum { rows_per_call = 8 };
        JSAMPROW rows[rows_per_call];
        while (cinfo->output_scanline < cinfo->output_height) {
            JDIMENSION count = cinfo->output_height - cinfo->output_scanline;
            if (count > rows_per_call) {
                count = rows_per_call;
            }
            for (JDIMENSION i = 0; i < count; i++) {
                rows[i] = pixels + (size_t)(cinfo->output_scanline + i) * row_stride;
            }
            jpeg_read_scanlines(cinfo, rows, count);
        }
    }
    /* Reads up to EOI, so a file cut after its last scan still fails as truncated. */
    jpeg_finish_decompress(cinfo);
    return PCODEC_OK;
}

pcodec_status pcodec_jpeg_read_header(const uint8_t *data, size_t size, pcodec_image_info *info,
                                      char *message, size_t message_capacity) {
    struct pcodec_jpeg_decoder decoder;
    memset(&decoder, 0, sizeof decoder);
    pcodec_jpeg_error_init(&decoder.error);
    decoder.cinfo.err = &decoder.error.base;
    pcodec_status status = pcodec_jpeg_read_header_guarded(&decoder, data, size, info);
    if (status != PCODEC_OK) {
        pcodec_copy_message(message, message_capacity, decoder.error.message);
    }
    jpeg_destroy_decompress(&decoder.cinfo);
    return status;
}

pcodec_status pcodec_jpeg_decode(const uint8_t *data, size_t size, const pcodec_image_info *info,
                                 uint8_t *pixels, size_t row_stride,
                                 char *message, size_t message_capacity) {
    struct pcodec_jpeg_decoder decoder;
    memset(&decoder, 0, sizeof decoder);
    pcodec_jpeg_error_init(&decoder.error);
    decoder.cinfo.err = &decoder.error.base;
    pcodec_status status =
        pcodec_jpeg_decode_guarded(&decoder, data, size, info, pixels, row_stride);
    if (status != PCODEC_OK) {
        pcodec_copy_message(message, message_capacity, decoder.error.message);
    }
    jpeg_destroy_decompress(&decoder.cinfo);
    return status;
}

/* ---- encoding ---------------------------------------------------------------------------- */

/* A growable malloc'ed destination; unlike jpeg_mem_dest it never loses track of its buffer
 * when compression fails half-way. */
struct pcodec_jpeg_sink {
    struct jpeg_destination_mgr base;
    uint8_t *buffer;
    size_t capacity;
    size_t size;
};

struct pcodec_jpeg_encoder {
    struct jpeg_compress_struct cinfo;
    struct pcodec_jpeg_error error;
    struct pcodec_jpeg_sink sink;
};

static void pcodec_jpeg_sink_init(j_compress_ptr cinfo) {
    struct pcodec_jpeg_sink *sink = (struct pcodec_jpeg_sink *)cinfo->dest;
    sink->base.next_output_byte = sink->buffer;
    sink->base.free_in_buffer = sink->capacity;
}

/* Called when the buffer is full (libjpeg's contract: all of it has been written). */
static boolean pcodec_jpeg_sink_grow(j_compress_ptr cinfo) {
    struct pcodec_jpeg_sink *sink = (struct pcodec_jpeg_sink *)cinfo->dest;
    if (sink->capacity > SIZE_MAX / 2) {
        ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 1);
    }
    size_t capacity = sink->capacity * 2;
    uint8_t *buffer = realloc(sink->buffer, capacity);
    if (buffer == NULL) {
        ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 2);
    }
    sink->base.next_output_byte = buffer + sink->capacity;
    sink->base.free_in_buffer = capacity - sink->capacity;
    sink->buffer = buffer;
    sink->capacity = capacity;
    return TRUE;
}

static void pcodec_jpeg_sink_finish(j_compress_ptr cinfo) {
    struct pcodec_jpeg_sink *sink = (struct pcodec_jpeg_sink *)cinfo->dest;
    sink->size = sink->capacity - sink->base.free_in_buffer;
}

static pcodec_status pcodec_jpeg_encode_guarded(struct pcodec_jpeg_encoder *encoder,
                                                const uint8_t *pixels, uint32_t width,
                                                uint32_t height, uint32_t channels,
                                                size_t row_stride, int quality,
                                                int subsample_chroma, int progressive) {
    if (setjmp(encoder->error.escape)) {
        return encoder->error.status;
    }
    j_compress_ptr cinfo = &encoder->cinfo;
    jpeg_create_compress(cinfo);
    encoder->sink.base.init_destination = pcodec_jpeg_sink_init;
    encoder->sink.base.empty_output_buffer = pcodec_jpeg_sink_grow;
    encoder->sink.base.term_destination = pcodec_jpeg_sink_finish;
    cinfo->dest = &encoder->sink.base;

    cinfo->image_width = width;
    cinfo->image_height = height;
    cinfo->input_components = (int)channels;
    cinfo->in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(cinfo);
    jpeg_set_quality(cinfo, quality, TRUE);
    if (channels == 3 && !subsample_chroma) {
        cinfo->comp_info[0].h_samp_factor = 1;
        cinfo->comp_info[0].v_samp_factor = 1;
    }
    cinfo->optimize_coding = TRUE;
    if (progressive) {
        jpeg_simple_progression(cinfo);
    }
    jpeg_start_compress(cinfo, TRUE);

    enum { rows_per_call = 8 };
    JSAMPROW rows[rows_per_call];
    while (cinfo->next_scanline < cinfo->image_height) {
        JDIMENSION count = cinfo->image_height - cinfo->next_scanline;
        if (count > rows_per_call) {
            count = rows_per_call;
        }
        for (JDIMENSION i = 0; i < count; i++) {
            /* libjpeg never writes through its input rows. */
            rows[i] = (JSAMPROW)(pixels + (size_t)(cinfo->next_scanline + i) * row_stride);
        }
        jpeg_write_scanlines(cinfo, rows, count);
    }
    jpeg_finish_compress(cinfo);
    return PCODEC_OK;
}

pcodec_status pcodec_jpeg_encode(const uint8_t *pixels, uint32_t width, uint32_t height,
                                 uint32_t channels, size_t row_stride, int quality,
                                 int subsample_chroma, int progressive,
                                 uint8_t **output, size_t *output_size,
                                 char *message, size_t message_capacity) {
    *output = NULL;
    *output_size = 0;
    if ((channels != 1 && channels != 3) || quality < 1 || quality > 100 || width == 0 ||
        height == 0 || row_stride < (size_t)width * channels) {
        pcodec_copy_message(message, message_capacity,
                            "JPEG encoding needs 1 or 3 channels, a non-empty image and "
                            "a quality of 1...100");
        return PCODEC_INVALID_ARGUMENT;
    }
    struct pcodec_jpeg_encoder encoder;
    memset(&encoder, 0, sizeof encoder);
    pcodec_jpeg_error_init(&encoder.error);
    encoder.cinfo.err = &encoder.error.base;

    /* A first guess of a quarter of the raw size; the sink doubles as needed. */
    size_t raw = (size_t)width * height * channels;
    encoder.sink.capacity = raw / 4 < 4096 ? 4096 : raw / 4;
    encoder.sink.buffer = malloc(encoder.sink.capacity);
    if (encoder.sink.buffer == NULL) {
        pcodec_copy_message(message, message_capacity, "out of memory for the JPEG output");
        return PCODEC_OUT_OF_MEMORY;
    }
    pcodec_status status = pcodec_jpeg_encode_guarded(&encoder, pixels, width, height, channels,
                                                      row_stride, quality, subsample_chroma,
                                                      progressive);
    jpeg_destroy_compress(&encoder.cinfo);
    if (status != PCODEC_OK) {
        pcodec_copy_message(message, message_capacity, encoder.error.message);
        free(encoder.sink.buffer);
        return status;
    }
    *output = encoder.sink.buffer;
    *output_size = encoder.sink.size;
    return PCODEC_OK;
}

void pcodec_free(void *buffer) {
    free(buffer);
}
