"""The data layer: every format in, canonical OpenAI-style messages out (see formats.py).

    from core.data import read_samples, write_samples, build_identity, validate_file
    python -m studio data --help

Modules: formats.py (readers, writers, detection), identity.py (identity builder, question
banks in assets/question_banks), tools.py (replace, repeat, LLaVA builder, dataset_info.json),
validate.py (validation report with token lengths).
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
    summary_line,
    write_samples,
)
from core.data.identity import build_identity, fill_placeholders, identity_answer, question_bank
from core.data.tools import (
    build_llava,
    check_image,
    check_output,
    dataset_info_for,
    parse_qa_text,
    read_dataset_info,
    repeat_file,
    repeat_samples,
    replace_in_file,
)
from core.data.validate import format_report, sample_text, validate_file

__all__ = [
    "FORMATS", "IMAGE_TOKEN", "WRITE_FORMATS", "build_identity", "build_llava", "check_image", "check_output", "check_sample",
    "dataset_info_for", "detect_format", "family_format", "fill_placeholders", "format_report",
    "identity_answer", "iter_records", "parse_mapping", "parse_qa_text", "question_bank", "read_dataset_info",
    "read_samples", "repeat_file", "repeat_samples", "replace_in_file", "sample_text", "summary_line",
    "validate_file", "write_samples",
]
