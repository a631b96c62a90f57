"""The files the scenarios drop: MNIST test digits as PNGs, and a corpus of hostile entries."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pathlib
import random
import struct
import zlib

import numpy as np
from PIL import Image, PngImagePlugin


REFERENCE_DIGITS = pathlib.Path(__file__).resolve().parents[2] / "models" / "mnist" / "reference" / "classifier_4x1x28x28.input.bin"


def mnist_digits(data: pathlib.Path, count: int, offset: int = 0) -> list[np.ndarray]:
    """`count` 28×28 grey MNIST test images from `data`/mnist/test.npz, cycling if needed;
    without the dataset, the four digits of the MNIST bundle's reference inputs."""
    test_set = data / "mnist" / "test.npz"
    if test_set.is_file():
        images = np.load(test_set)["images"][:, :, :, 0]
    else:
        floats = np.fromfile(REFERENCE_DIGITS, dtype="<f4").reshape(4, 28, 28)
        images = np.clip(np.rint(floats * 255), 0, 255).astype(np.uint8)
    return [images[(offset + index) % len(images)] for index in range(count)]


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(pixels: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def stage_digits(data: pathlib.Path, staging: pathlib.Path, count: int, prefix: str = "digit") -> dict[str, str]:
    """Writes `count` MNIST PNGs into `staging` (the inbox's file system: dropping is a rename).
    Each PNG carries its index in a text chunk, so that no two are the same file even where two
    digits are. Returns name → SHA-256."""
    staged: dict[str, str] = {}
    for index, pixels in enumerate(mnist_digits(data, count)):
        name = f"{prefix}-{index:05d}.png"
        buffer = io.BytesIO()
        info = PngImagePlugin.PngInfo()
        info.add_text("torture-index", str(index))
        Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info)
        payload = buffer.getvalue()
        (staging / name).write_bytes(payload)
        staged[name] = hashlib.sha256(payload).hexdigest()
    return staged


# MARK: - Hostile entries

#: What must become of a hostile entry: a report in the outbox, one in failed/, either of those
#: (exactly one), or nothing (it stays in the inbox, never read: in-progress names, directories).
PURIFIED, FAILED, EITHER, STAYS = "purified", "failed", "either", "stays"


@dataclasses.dataclass
class HostileEntry:
    """One inbox entry, by its raw name (bytes: names need not be UTF-8), what it is, and what
    must become of it."""

    name: bytes
    kind: str
    expect: str
    sha256: str | None = None


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_from_rows(width: int, height: int, rows: bytes, extra_chunks: bytes = b"", bit_depth: int = 8, colour: int = 0) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + extra_chunks
            + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b""))


def lying_png(width: int, height: int, real: bytes) -> bytes:
    """`real`'s chunks after a rewritten IHDR claiming `width` × `height` (CRC valid)."""
    ihdr_end = 8 + 8 + 13 + 4
    header = bytearray(real[16:29])
    header[0:8] = struct.pack(">II", width, height)
    return real[:8] + png_chunk(b"IHDR", bytes(header)) + real[ihdr_end:]


def lying_jpeg(width: int, height: int, real: bytes) -> bytes:
    """`real` with its SOF marker's dimensions replaced."""
    data = bytearray(real)
    position = 2
    while position < len(data) - 9:
        marker = data[position + 1]
        length = struct.unpack(">H", data[position + 2:position + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[position + 5:position + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        position += 2 + length
    raise ValueError("no SOF marker")


def bit_flips(payload: bytes, flips: int, rng: random.Random) -> bytes:
    data = bytearray(payload)
    for _ in range(flips):
        position = rng.randrange(len(data))
        data[position] ^= 1 << rng.randrange(8)
    return bytes(data)


def hostile_corpus(data: pathlib.Path, rng: random.Random, flips_per_format: int = 40) -> list[tuple[HostileEntry, bytes]]:
    """Regular files with their bytes: truncations, bit flips, lying headers, decompression
    bombs, non-images and odd names (FIFOs, symlinks and directories are made by ``make_special``)."""
    digit = mnist_digits(data, 1, offset=7)[0]
    png, jpeg = png_bytes(digit), jpeg_bytes(digit)
    files: list[tuple[bytes, str, str, bytes]] = []

    for cut in sorted({1, 8, 16, 33, len(png) // 2, len(png) - 13}):
        files.append((f"trunc-png-{cut}.png".encode(), "truncated PNG", FAILED, png[:cut]))
    files.append((b"trunc-png-no-iend.png", "PNG without IEND", EITHER, png[:-12]))
    for cut in sorted({2, 20, len(jpeg) // 3, len(jpeg) // 2, len(jpeg) - 2}):
        files.append((f"trunc-jpeg-{cut}.jpg".encode(), "truncated JPEG", FAILED if cut < len(jpeg) - 2 else EITHER, jpeg[:cut]))

    for index in range(flips_per_format):
        files.append((f"flip-png-{index:03d}.png".encode(), "bit-flipped PNG", EITHER, bit_flips(png, 1 + index % 8, rng)))
        files.append((f"flip-jpeg-{index:03d}.jpg".encode(), "bit-flipped JPEG", EITHER, bit_flips(jpeg, 1 + index % 8, rng)))

    for width, height in ((100_000, 100_000), (0, 28), (28, 0), (2**31 - 1, 1), (1, 2**31 - 1), (4096, 4096), (28, 29)):
        files.append((f"lie-png-{width}x{height}.png".encode(), "PNG header lying about its size", FAILED, lying_png(width, height, png)))
    for width, height in ((65535, 65535), (0, 28), (28, 1000), (8192, 8192)):
        files.append((f"lie-jpeg-{width}x{height}.jpg".encode(), "JPEG header lying about its size", FAILED, lying_jpeg(width, height, jpeg)))

    # Decompression bombs: a few kilobytes of zlib that inflate to 64 MP or 16 MP of zeros, an
    # iTXt chunk inflating to 200 MB, and an IDAT stream far longer than the image it declares.
    for side in (8192, 4096):
        rows = zlib.compress(b"\x00" * ((side + 1) * side), 9)
        files.append((f"bomb-png-{side}.png".encode(), f"PNG bomb {side}×{side} of zeros", FAILED, png_from_rows(side, side, rows)))
    text = zlib.compress(b"A" * 200_000_000, 9)
    itxt = png_chunk(b"zTXt", b"bomb\x00\x00" + text)
    files.append((b"bomb-ztxt.png", "PNG with a 200 MB compressed text chunk", EITHER,
                  png[:33] + itxt + png[33:]))
    long_rows = zlib.compress(b"\x00" * (29 * 28 * 4096), 9)
    files.append((b"bomb-idat-overlong.png", "28×28 PNG whose IDAT inflates 4096 times too far", EITHER,
                  png_from_rows(28, 28, long_rows)))

    files.append((b"not-an-image.png", "text named .png", FAILED, b"hello, purifyd\n" * 10))
    files.append((b"elf.jpg", "an ELF executable named .jpg", FAILED, pathlib.Path("/bin/true").read_bytes()))
    files.append((b"gif.png", "a GIF named .png", FAILED, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"))
    files.append((b"only-magic.png", "PNG signature alone", FAILED, png[:8]))
    files.append((b"only-soi.jpg", "JPEG SOI alone", FAILED, b"\xff\xd8"))
    files.append((b"zeros.png", "4 KiB of zero bytes", FAILED, b"\x00" * 4096))
    files.append((b"png-named.jpg", "a valid PNG named .jpg", PURIFIED, png))
    files.append((b"jpeg-named.png", "a valid JPEG named .png", PURIFIED, jpeg))
    files.append((b"rgb.png", "a 28x28 RGB PNG (gray bundle)", EITHER, png_bytes(np.stack([digit] * 3, axis=-1))))
    files.append((b"sixteen-bit.png", "a 16-bit grey PNG", EITHER, png_from_rows(
        28, 28, zlib.compress(b"".join(b"\x00" + digit[row].astype(">u2").tobytes() for row in range(28))), bit_depth=16)))
    files.append((b"big-sparse.png", "a 48 MiB file over max_bytes (sparse)", FAILED, b""))

    odd_names = [
        b"with space.png", b"tab\there.png", b"new\nline.png", b"-leading-dash.png", b"--help.png",
        "caf\u00e9-\u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9.png".encode(), "emoji-\U0001F600.png".encode(),
        "rtl-\u202egnp.exe".encode(), b"invalid-utf8-\xff\xfe.png", b"latin1-caf\xe9.png", b"back\\slash.png",
        b"quote'\"$(touch pwned).png", b"a..b.png", b"no-extension", b"UPPER.PNG", b"upper.png",
        b"x.png.json", b"report-clash.png.json", b"star*?[].png", b"percent%s%n.png", b"\x01control\x7f.png",
        b"n" * 200 + b".png",
    ]
    for name in odd_names:
        files.append((name, "odd name", PURIFIED, png))
    files.append((b"L" * 251 + b".png", "a 255-byte name (too long to claim with a prefix)", FAILED, png))
    for name in (b".hidden.png", b"in-progress.tmp", b"upload.part", b".rsync.XXXXXX"):
        files.append((name, "in-progress name", STAYS, png))

    return [(HostileEntry(name=name, kind=kind, expect=expect, sha256=hashlib.sha256(payload).hexdigest() if payload else None),
             payload) for name, kind, expect, payload in files]


def place_hostile(inbox: pathlib.Path, staging: pathlib.Path, corpus: list[tuple[HostileEntry, bytes]]) -> list[HostileEntry]:
    """Writes the corpus into `staging` and renames each in (the sparse file is extended to
    48 MiB), then creates the special entries directly in the inbox: FIFOs, symlinks (to a
    secret, to a valid PNG, dangling, to a folder, to a FIFO), a folder and a hard link.
    Returns every entry."""
    entries: list[HostileEntry] = []
    staging_bytes, inbox_bytes = os.fsencode(staging), os.fsencode(inbox)
    for entry, payload in corpus:
        source = os.path.join(staging_bytes, entry.name)
        with open(source, "wb") as file:
            file.write(payload)
            if entry.name == b"big-sparse.png":
                file.truncate(48 << 20)
        os.rename(source, os.path.join(inbox_bytes, entry.name))
        entries.append(entry)

    valid = next(payload for entry, payload in corpus if entry.name == b"png-named.jpg")
    outside = staging / "outside.png"
    outside.write_bytes(valid)
    secret = staging / "secret.txt"
    secret.write_text("not for purifyd\n")
    os.mkfifo(staging / "outside.fifo")
    special = [
        (b"fifo.png", "a FIFO", FAILED, lambda path: os.mkfifo(path)),
        (b"fifo-no-extension", "a FIFO", FAILED, lambda path: os.mkfifo(path)),
        (b"link-secret.png", "a symlink to a text file", FAILED, lambda path: os.symlink(secret, path)),
        (b"link-valid.png", "a symlink to a valid PNG", FAILED, lambda path: os.symlink(outside, path)),
        (b"link-dangling.png", "a dangling symlink", FAILED, lambda path: os.symlink(b"/nonexistent/x.png", path)),
        (b"link-dir.png", "a symlink to a folder", FAILED, lambda path: os.symlink("/etc", path)),
        (b"link-fifo.png", "a symlink to a FIFO", FAILED, lambda path: os.symlink(staging / "outside.fifo", path)),
        (b"link-loop.png", "a symlink to itself", FAILED, lambda path: os.symlink(path, path)),
        (b"a-folder.png", "a folder", STAYS, lambda path: os.mkdir(path)),
        (b"hardlink.png", "a hard link to a file outside the inbox", PURIFIED, lambda path: os.link(outside, path)),
    ]
    for name, kind, expect, make in special:
        make(os.path.join(inbox_bytes, name))
        entries.append(HostileEntry(name=name, kind=kind, expect=expect))
    return entries
