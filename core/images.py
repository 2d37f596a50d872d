"""Opening an image with a pixel limit: the one place the studio calls PIL.Image.open.

A PNG of a few KB can decode to gigabytes (a decompression bomb); Pillow only warns up to twice its
own limit and raises its own exception beyond it. Here every image is checked against MAX_PIXELS
before it is decoded, and anything unreadable becomes a one-line DataError naming the file:

    python -c "from core.images import open_image; print(open_image('photo.jpg').size)"
"""

from __future__ import annotations

import os
import re
import struct
import warnings
from pathlib import Path
from typing import IO

from core.errors import DataError

# 8000 x 8000. A 48 MP phone photo fits; LLaVA resizes every picture to 336 x 336 anyway, and a
# decoded image this size already takes 256 MB as RGBA.
MAX_PIXELS = 64_000_000

_HINT_BIG = "downscale it (e.g. to 2048 px on the long side); LLaVA sees 336 x 336 anyway"
_HINT_BAD = "re-save it as JPEG or PNG"


def _name(source: str | os.PathLike | IO[bytes]) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return str(getattr(source, "name", None) or "<uploaded image>")


def open_image(source: str | os.PathLike | IO[bytes], max_pixels: int = MAX_PIXELS, decode: bool = True):
    """The image, decoded, as a PIL.Image (mode as stored; callers convert). `source` is a path or a
    binary file object (a Streamlit upload). Raises DataError naming the file when it is missing, not a
    regular file, not an image, or larger than `max_pixels` (the size is in the message).

    decode=False checks the whole file (Pillow's verify: chunks and checksums) without decoding the
    pixels, for a quick check of many files; the image returned then has its size and mode only."""
    from PIL import Image, UnidentifiedImageError

    name = _name(source)
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if not p.exists():
            raise DataError(name, None, None, "image not found", "check the path (relative ones are "
                                                                    "resolved against image_folder)")
        if not p.is_file():  # a FIFO or a device would block or never end
            raise DataError(name, None, None, "not a regular file", "give the path of a JPEG or PNG file")
    try:
        with warnings.catch_warnings():
            # Pillow warns between its limit and twice it; an error here, so nothing that size is decoded
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(source)
            width, height = im.size
            if width * height > max_pixels:
                im.close()
                raise DataError(name, None, None, f"{width:,} x {height:,} = {width * height:,} pixels is more "
                                f"than the limit of {max_pixels:,} (a decompression bomb?)", _HINT_BIG)
            if decode:
                im.load()
            else:
                im.verify()
            return im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow refused before we saw the size (its own limit, when max_pixels is above it)
        m = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(m.group(1)):,} pixels" if m else "its size"
        limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
        raise DataError(name, None, None, f"{size} is more than the limit of {limit:,} "
                        "(a decompression bomb?)", _HINT_BIG) from None
    except FileNotFoundError:
        raise DataError(name, None, None, "image not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        raise DataError(name, None, None, f"not a readable image: {e}", _HINT_BAD) from None
