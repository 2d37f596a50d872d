"""The data layer: every format in, canonical OpenAI-style messages out (see formats.py).

    from core.data import read_samples, write_samples, build_identity, validate_file
    python -m studio data --help
"""

from core.data.formats import (
    FORMATS,
    IMAGE_TOKEN,
    WRITE_FORMATS,
    check_sample,
    detect_format,
    family_format,
    iter_records,
    parse_mapping,
    read_samples,
    write_samples,
)
from core.data.identity import build_identity, fill_placeholders, identity_answer, question_bank

__all__ = [
    "FORMATS", "IMAGE_TOKEN", "WRITE_FORMATS", "build_identity", "check_sample", "detect_format",
    "family_format", "fill_placeholders", "identity_answer", "iter_records", "parse_mapping",
    "question_bank", "read_samples", "write_samples",
]
