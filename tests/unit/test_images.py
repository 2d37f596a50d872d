"""core/images.py: every image is opened under a pixel limit, and whatever is wrong with it (a
decompression bomb, a truncated or fake file, a FIFO) is a one-line DataError naming the file.

    .venv/bin/python -m pytest tests/unit/test_images.py
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from core.errors import DataError
from core.images import MAX_PIXELS, open_image


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A valid all-black 1-bit PNG of width x height, written a row at a time: a few KB on disk for
    hundreds of megapixels decoded (30,000 x 30,000 is 3.7 GB as RGB)."""
    comp = zlib.compressobj(9)
    row = b"\x00" + bytes((width + 7) // 8)  # filter byte + the row's bits
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side, words", [
    (30_000, "900,000,000 pixels is more than the limit"),  # Pillow itself raises DecompressionBombError
    (10_000, "100,000,000 pixels is more than the limit"),  # Pillow only warns (between its limit and 2x)
    (8_500, "8,500 x 8,500 = 72,250,000 pixels is more than the limit of 64,000,000"),  # under Pillow's limit
])
def test_a_decompression_bomb_is_refused_naming_the_file_and_size(tmp_path, side, words):
    p = png_bomb(tmp_path / f"bomb{side}.png", side, side)
    assert p.stat().st_size < 200_000
    for decode in (True, False):
        with pytest.raises(DataError) as e:
            open_image(p, decode=decode)
        first = str(e.value).split("\n")[0]
        assert first.startswith(f"{p}: ") and words in first, first
        assert "downscale" in str(e.value)


def test_the_limit_is_a_parameter_and_a_real_image_opens(tmp_path):
    p = tmp_path / "ok.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(p)
    im = open_image(p)
    assert im.size == (40, 30) and im.convert("RGB").getpixel((0, 0)) == (200, 10, 10)
    with pytest.raises(DataError, match=r"40 x 30 = 1,200 pixels is more than the limit of 1,000"):
        open_image(p, max_pixels=1000)
    assert MAX_PIXELS == 64_000_000
    buf = io.BytesIO(p.read_bytes())  # an upload: a file object, not a path
    assert open_image(buf).size == (40, 30)


def test_an_uploaded_bomb_names_the_upload(tmp_path):
    data = png_bomb(tmp_path / "b.png", 10_000, 10_000).read_bytes()
    up = io.BytesIO(data)
    up.name = "cat.png"  # Streamlit's UploadedFile carries the name the user picked
    with pytest.raises(DataError, match=r"^cat\.png: 100,000,000 pixels"):
        open_image(up)


def test_broken_files_are_one_line_errors(tmp_path):
    fake = tmp_path / "fake.jpg"
    fake.write_text("not an image", encoding="utf-8")
    with pytest.raises(DataError, match=r"fake\.jpg: not a readable image"):
        open_image(fake)
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:-30])
    with pytest.raises(DataError, match=r"cut\.png: not a readable image"):
        open_image(cut)
    with pytest.raises(DataError, match=r"none\.png: image not found"):
        open_image(tmp_path / "none.png")
    with pytest.raises(DataError, match="not a regular file"):
        open_image(tmp_path)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"pipe\.png: not a regular file"):  # would block forever
        open_image(fifo)


def test_llava_builder_refuses_a_bomb_in_one_line(tmp_path, capsys):
    from core.data.tools import check_image
    from studio.cli import main

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    bomb = png_bomb(imgs / "oph.png", 30_000, 30_000)
    with pytest.raises(DataError, match=r"oph\.png: 900,000,000 pixels"):
        check_image(bomb)
    qa = tmp_path / "qa.txt"
    qa.write_text("Q: What is in the picture?\nA: A cat.\n", encoding="utf-8")
    out = tmp_path / "llava.json"
    assert main(["data", "llava", "--images", str(imgs), "--qa", str(qa), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "oph.png: 900,000,000 pixels" in err
    assert not out.exists()


def test_chat_cli_refuses_a_bomb_image(tmp_path, monkeypatch, capsys):
    import core.chat
    from studio.cli import main

    bomb = png_bomb(tmp_path / "oph.png", 10_000, 10_000)
    monkeypatch.setattr(core.chat, "load_chat_model", lambda *a, **k: type("M", (), {"adapters": {}})())
    assert main(["chat", "tiny", "--image", str(bomb), "--prompts", str(bomb)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "oph.png: 100,000,000 pixels" in err
