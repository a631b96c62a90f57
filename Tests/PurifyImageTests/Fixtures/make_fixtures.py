"""Writes the PurifyImage test fixtures into this folder.

Run from anywhere: python make_fixtures.py  (Python 3 with Pillow, e.g. the project's .venv).

PNGs are written by hand (zlib + struct) so that each color type, bit depth, tRNS and Adam7
interlacing is exactly what its name says. Pixel values follow the formulas below, which
FixtureFormulas in the Swift tests repeats: the tests check every decoded pixel.
JPEGs come from Pillow (progressive, CMYK) and are checked within a tolerance. The "huge"
files are real small images whose headers were patched to claim enormous dimensions.
"""
import io
import os
import struct
import zlib

from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
W, H = 13, 7


def sample8(x, y, c):
    return (x * 37 + y * 101 + c * 59 + 11) % 256


def sample16(x, y, c):
    return (x * 9973 + y * 27011 + c * 4099 + 12345) % 65536


def palette_entry(i):
    return (i * 16, 255 - i * 16, (i * 73) % 256)


def palette_index(x, y):
    return (x + 3 * y) % 16


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def pack_row(samples, bit_depth):
    if bit_depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    if bit_depth == 8:
        return bytes(samples)
    per_byte = 8 // bit_depth
    out = bytearray()
    for i in range(0, len(samples), per_byte):
        group = samples[i:i + per_byte] + [0] * (per_byte - len(samples[i:i + per_byte]))
        byte = 0
        for s in group:
            byte = (byte << bit_depth) | s
        out.append(byte)
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png(name, color_type, bit_depth, pixel, extra=b"", interlace=False):
    """pixel(x, y) -> list of samples for one pixel."""
    def scanlines(xs, ys):
        return b"".join(b"\0" + pack_row([s for x in xs for s in pixel(x, y)], bit_depth) for y in ys)

    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            xs, ys = list(range(x0, W, dx)), list(range(y0, H, dy))
            if xs and ys:
                raw += scanlines(xs, ys)
    else:
        raw = scanlines(range(W), range(H))
    ihdr = struct.pack(">IIBBBBB", W, H, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
    Image.open(io.BytesIO(data)).load()  # Pillow must accept it too


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def main():
    png("gray1.png", 0, 1, lambda x, y: [(x + y) % 2])
    png("gray4.png", 0, 4, lambda x, y: [(x + 2 * y) % 16])
    png("gray8.png", 0, 8, lambda x, y: [sample8(x, y, 0)])
    png("gray16.png", 0, 16, lambda x, y: [sample16(x, y, 0)])
    png("gray8_trns.png", 0, 8, lambda x, y: [sample8(x, y, 0)],
        extra=chunk(b"tRNS", struct.pack(">H", sample8(2, 3, 0))))
    png("graya8.png", 4, 8, lambda x, y: [sample8(x, y, c) for c in range(2)])
    png("graya16.png", 4, 16, lambda x, y: [sample16(x, y, c) for c in range(2)])
    png("rgb8.png", 2, 8, lambda x, y: [sample8(x, y, c) for c in range(3)])
    png("rgb16.png", 2, 16, lambda x, y: [sample16(x, y, c) for c in range(3)])
    png("rgb8_trns.png", 2, 8, lambda x, y: [sample8(x, y, c) for c in range(3)],
        extra=chunk(b"tRNS", struct.pack(">HHH", *(sample8(4, 5, c) for c in range(3)))))
    png("rgba8.png", 6, 8, lambda x, y: [sample8(x, y, c) for c in range(4)])
    png("rgba16.png", 6, 16, lambda x, y: [sample16(x, y, c) for c in range(4)])
    plte = chunk(b"PLTE", b"".join(bytes(palette_entry(i)) for i in range(16)))
    png("palette8.png", 3, 8, lambda x, y: [palette_index(x, y)], extra=plte)
    png("palette4_trns.png", 3, 4, lambda x, y: [palette_index(x, y)],
        extra=plte + chunk(b"tRNS", bytes(i * 17 for i in range(16))))
    png("rgb8_interlaced.png", 2, 8, lambda x, y: [sample8(x, y, c) for c in range(3)],
        interlace=True)

    # gray8.png / rgb16.png with colorimetry chunks that must not change the decoded samples.
    png("gray8_gamma1.png", 0, 8, lambda x, y: [sample8(x, y, 0)],
        extra=chunk(b"gAMA", struct.pack(">I", 100000)))
    chrm = struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)
    png("rgb16_gamma_chrm.png", 2, 16, lambda x, y: [sample16(x, y, c) for c in range(3)],
        extra=chunk(b"gAMA", struct.pack(">I", 50000)) + chunk(b"cHRM", chrm))

    # rgb8.png plus an eXIf chunk (big-endian TIFF) saying "rotate 90 degrees clockwise" (6).
    tiff = b"MM\0*" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + b"\0" * 4
    png("rgb8_exif6.png", 2, 8, lambda x, y: [sample8(x, y, c) for c in range(3)],
        extra=chunk(b"eXIf", tiff))
    with Image.open(os.path.join(HERE, "rgb8_exif6.png")) as im:
        assert ImageOps.exif_transpose(im).size == (H, W)

    # A smooth 48x32 RGB gradient as a progressive JPEG.
    gradient = Image.new("RGB", (48, 32))
    gradient.putdata([(x * 5, y * 8, 128 + x - y) for y in range(32) for x in range(48)])
    buffer = io.BytesIO()
    gradient.save(buffer, "JPEG", quality=95, progressive=True, subsampling=0)
    write("progressive.jpg", buffer.getvalue())
    gradient.save(os.path.join(HERE, "progressive_reference.png"))

    # CMYK, 32x32 in four flat 16x16 quadrants of known inks. Pillow writes Adobe (inverted) CMYK.
    inks = [(255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 64), (0, 0, 0, 128)]
    cmyk = Image.new("CMYK", (32, 32))
    cmyk.putdata([inks[(y // 16) * 2 + x // 16] for y in range(32) for x in range(32)])
    buffer = io.BytesIO()
    cmyk.save(buffer, "JPEG", quality=100)
    write("cmyk.jpg", buffer.getvalue())

    # Pillow's own decodes of the two JPEGs: PurifyImage's must be bit-identical.
    with Image.open(os.path.join(HERE, "progressive.jpg")) as im:
        im.convert("RGB").save(os.path.join(HERE, "progressive_pillow.png"))
    with Image.open(os.path.join(HERE, "cmyk.jpg")) as im:
        im.convert("RGB").save(os.path.join(HERE, "cmyk_pillow.png"))

    # A noisy 64x48 RGB image and Pillow's BILINEAR resizes of it, down and up.
    noisy = Image.new("RGB", (64, 48))
    noisy.putdata([tuple(sample8(x * x, y * 3 + x, c) for c in range(3)) for y in range(48) for x in range(64)])
    noisy.save(os.path.join(HERE, "noisy.png"))
    noisy.resize((23, 17), Image.BILINEAR).save(os.path.join(HERE, "noisy_23x17_pillow.png"))
    noisy.resize((150, 101), Image.BILINEAR).save(os.path.join(HERE, "noisy_150x101_pillow.png"))

    # Headers claiming enormous sizes: 100000x100000 PNG, 60000x60000 JPEG.
    with open(os.path.join(HERE, "gray8.png"), "rb") as f:
        data = bytearray(f.read())
    ihdr = bytes(data[12:16]) + struct.pack(">II", 100000, 100000) + bytes(data[24:29])
    data[8:33] = struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    write("huge_100000x100000.png", bytes(data))
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    write("huge_60000x60000.jpg", bytes(data))


if __name__ == "__main__":
    main()
