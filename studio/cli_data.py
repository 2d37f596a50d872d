"""`python -m studio data ...`: build, convert, check and fix training data.

    python -m studio data identity --name 小天 --author Alice --repeat 10 -o identity.jsonl
    python -m studio data convert alpaca_zh_demo.json -o alpaca.jsonl                # -> canonical
    python -m studio data convert single_turn_data.json --map input=toy_input output=toy_output -o out.jsonl
    python -m studio data convert dpo_en_demo.json --take chosen -o chosen.jsonl          # preference pairs
    python -m studio data convert kto_en_demo.json --take desirable -o good.jsonl         # KTO: label true only
    python -m studio data validate data.jsonl --tokenizer workspace/models/tiny --max-length 512
    python -m studio data replace assistant_Tuner.jsonl --old 尖米 --new 小天 -o out.jsonl --dry-run
    python -m studio data repeat unique_data.json -n 200 -o repeated.json
    python -m studio data llava --images imgs/ --qa qa.txt --repeat 200 -o llava.json

Reports go to stderr (or JSON to stdout with --json); a failure prints one file:line: field line
and exits 1, leaving no output file. Every field of the input that was not used is named with its
row count ("ignored: label (8 rows)"). -o never replaces an input file, nor an existing file
unless --overwrite is given.
"""

from __future__ import annotations

import argparse
import json
import sys

from studio.output import emit  # results to the real stdout (studio/output.py)


def _err(*a: object) -> None:
    print(*a, file=sys.stderr, flush=True)


def _fmt_and_map(args: argparse.Namespace) -> tuple[str | None, dict | None, dict | None]:
    """(format, mapping, speakers): the flags, else the dataset_info.json lying beside the file."""
    from core.data import dataset_info_for, parse_mapping

    fmt, mapping = args.fmt, parse_mapping(args.map)
    if fmt is None and mapping is None:
        entry = dataset_info_for(args.input)
        if entry:  # LLaMA-Factory data folder: its dataset_info.json says how to read the file
            _err(f"using dataset_info.json beside the file: format {entry['fmt']}, columns {entry['mapping'] or '-'}")
            return entry["fmt"], entry["mapping"], entry.get("speakers")
    return fmt, mapping, None


def _out_ok(args: argparse.Namespace, *inputs: str | None) -> None:
    from core.data import check_output

    check_output(args.out, [p for p in inputs if p], overwrite=args.overwrite)


def cmd_identity(args: argparse.Namespace) -> int:
    from core.data import build_identity, read_samples, write_samples

    if args.ratio and not args.mix:
        _err("--ratio needs --mix FILE (the general data to mix in)")
        return 2
    _out_ok(args, args.mix, args.template, args.questions)
    mix = list(read_samples(args.mix)) if args.mix else None
    if args.ratio and not mix:
        _err("--ratio needs --mix FILE (the general data to mix in)")
        return 2
    extra = list(read_samples(args.template)) if args.template else None
    questions = None
    if args.questions:
        with open(args.questions, encoding="utf-8-sig") as f:
            questions = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    try:
        samples = build_identity(args.name, args.author, questions=questions, lang=args.lang, repeat=args.repeat,
                                 system=args.system, mix=mix, ratio=args.ratio, seed=args.seed, extra=extra)
    except ValueError as e:
        _err(f"error: {e}")
        return 2
    n = write_samples(samples, args.out, to=args.to)
    _err(f"wrote {n} samples to {args.out} ({args.to})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from core.data import family_format, read_samples, summary_line, write_samples

    _out_ok(args, args.input)
    fmt, mapping, speakers = _fmt_and_map(args)
    st: dict = {}
    out = Path(args.out)
    # media stored as bytes (Parquet image columns) are written beside the output
    media_dir = out.parent / f"{out.stem}_media"
    samples = read_samples(args.input, fmt, mapping, image_folder=args.image_folder,
                           check_images=not args.no_image_check, stats=st, take=args.take, media_dir=media_dir,
                           speakers=speakers)
    to = args.to
    if to == "same":
        from core.data import detect_format

        to = family_format(fmt or detect_format(args.input, mapping))
    wst: dict = {}
    fresh = not media_dir.exists()
    try:
        n = write_samples(samples, args.out, to=to, overwrite=True, stats=wst)
    except BaseException:
        if fresh and media_dir.is_dir():  # media this failed run extracted, and only those
            import shutil

            shutil.rmtree(media_dir, ignore_errors=True)
        raise
    st["not_written"] = wst.get("not_written", {})
    media = ", ".join(f"{v} {k}" for k, v in st["media"].items() if v)
    _err(f"{args.input}: format {st['format']}, {st['records']} records -> {n} samples written to {args.out} "
         f"({to}){'; media: ' + media if media else ''}; {summary_line(st)}")
    if args.json:
        emit(json.dumps({"in": args.input, "format": st["format"], "records": st["records"], "samples": n,
                          "dropped": st["dropped"], "ignored": st["ignored"], "media": st["media"],
                          "not_written": st["not_written"], "take": args.take, "out": args.out, "to": to},
                         ensure_ascii=False))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from core.data import format_report, validate_file

    fmt, mapping, speakers = _fmt_and_map(args)
    r = validate_file(args.input, fmt, mapping, tokenizer=args.tokenizer, max_length=args.max_length,
                      image_folder=args.image_folder, take=args.take, speakers=speakers,
                      trust_remote_code=args.trust_remote_code)
    for e in r["errors"]:
        _err(e)
    if r["errors_total"] > len(r["errors"]):
        _err(f"... and {r['errors_total'] - len(r['errors'])} more errors")
    if args.json:
        emit(json.dumps(r, ensure_ascii=False, indent=2))
    else:
        _err(format_report(r))
    return 0 if r["ok"] else 1


def cmd_replace(args: argparse.Namespace) -> int:
    from core.data import replace_in_file

    if not args.dry_run and not args.out:
        _err("-o OUT is needed (or --dry-run)")
        return 2
    if not args.dry_run:
        _out_ok(args, args.input)
    r = replace_in_file(args.input, args.old, args.new, args.out, dry_run=args.dry_run)
    if args.dry_run:
        for d in r["diff"]:
            _err(d)
    fields = ", ".join(f"{k} {v}" for k, v in r["fields"].items()) or "-"
    where = "would be made (dry run, nothing written)" if args.dry_run else f"made, written to {args.out}"
    _err(f"{r['replacements']} replacements of {args.old!r} -> {args.new!r} in {r['records_changed']} of "
         f"{r['records']} records {where}; by field: {fields}")
    if args.json:
        emit(json.dumps(r, ensure_ascii=False, indent=2))
    return 0


def cmd_repeat(args: argparse.Namespace) -> int:
    from core.data import repeat_file

    _out_ok(args, args.input)
    r = repeat_file(args.input, args.n, args.out)
    _err(f"{args.input}: {r['records']} records ({r['format']}) x {args.n} = {r['written']} written to {args.out}")
    return 0


def cmd_llava(args: argparse.Namespace) -> int:
    from core.data import build_llava, write_samples

    _out_ok(args, args.qa)
    samples, report = build_llava(args.images, args.qa, repeat=args.repeat)
    for im in report["images"]:
        _err(f"  {im['path']}: {im['width']}x{im['height']} {im['mode']}")
    for p in report["unused_images"]:
        _err(f"  {p}: not used by any Q&A block")
    n = write_samples(samples, args.out, to=args.to)
    _err(f"{report['conversations']} conversations ({report['qa_pairs']} Q&A pairs) x {args.repeat} = {n} records "
         f"written to {args.out} ({args.to})")
    if args.json:
        emit(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


def _io_opts(s: argparse.ArgumentParser) -> None:
    from core.data.formats import FORMATS, MAP_KEYS

    s.add_argument("--from", dest="fmt", choices=list(FORMATS), default=None,
                   help="input format (default: detected from the first records)")
    s.add_argument("--map", nargs="+", metavar="OURS=THEIRS", default=None,
                   help=f"field mapping, e.g. system=toy_system input=toy_input output=toy_output, or text=toy_text "
                        f"(ours: {', '.join(MAP_KEYS)})")
    s.add_argument("--image-folder", default=None, help="where relative image, video and audio paths point (default: the file's folder)")
    s.add_argument("--take", choices=["chosen", "desirable"], default=None,
                   help="read preference pairs as their chosen answers (chosen), or keep only KTO rows labelled "
                        "true (desirable); without it such files are refused")


def _overwrite_opt(s: argparse.ArgumentParser) -> None:
    s.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (never an input file)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from core.data.formats import WRITE_FORMATS

    p = sub.add_parser("data", help="build, convert, validate and fix training data",
                       description="Data tools. Everything converts to canonical OpenAI-style messages (JSONL).")
    dsub = p.add_subparsers(dest="data_verb", required=True, metavar="ACTION")

    s = dsub.add_parser("identity", help="self-identity Q&A for a name and an author")
    s.add_argument("--name", required=True)
    s.add_argument("--author", default="Fine-Tune Studio")
    s.add_argument("--repeat", type=int, default=1, help="repeat the question set N times")
    s.add_argument("--lang", choices=["zh", "en", "both"], default="both")
    s.add_argument("--questions", default=None, help="a file of questions, one per line (default: built-in bank)")
    s.add_argument("--template", default=None,
                   help="also add the samples of a file with {{name}}/{{author}} placeholders (LLaMA-Factory identity.json)")
    s.add_argument("--system", default="", help="system prompt for every sample")
    s.add_argument("--mix", default=None, help="general data to mix in (any readable format)")
    s.add_argument("--ratio", type=float, default=0.0, help="share of general samples in the output, 0 <= R < 1")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--to", choices=WRITE_FORMATS, default="openai")
    s.add_argument("-o", "--out", required=True)
    _overwrite_opt(s)
    s.set_defaults(func=cmd_identity)

    s = dsub.add_parser("convert", help="convert any supported format to canonical (or xtuner / llava / ...)")
    s.add_argument("input")
    _io_opts(s)
    s.add_argument("--to", choices=[*WRITE_FORMATS, "same"], default="openai",
                   help="output format; 'same' writes the input's own family")
    s.add_argument("--no-image-check", action="store_true", help="do not require image, video and audio files to exist (URLs are never checked)")
    s.add_argument("--json", action="store_true")
    s.add_argument("-o", "--out", required=True)
    _overwrite_opt(s)
    s.set_defaults(func=cmd_convert)

    s = dsub.add_parser("validate", help="check a data file; every problem as file:line: field: message")
    s.add_argument("input")
    _io_opts(s)
    s.add_argument("--tokenizer", default=None, help="model or tokenizer folder: adds token-length statistics")
    s.add_argument("--max-length", type=int, default=None, help="count samples longer than this")
    s.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    s.add_argument("--trust-remote-code", action="store_true",
                   help="let the tokenizer folder run its own Python code (only for models you trust)")
    s.set_defaults(func=cmd_validate)

    s = dsub.add_parser("replace", help="replace text in the values of every record (keys and paths untouched)")
    s.add_argument("input")
    s.add_argument("--old", required=True)
    s.add_argument("--new", required=True)
    s.add_argument("-o", "--out", default=None)
    s.add_argument("--dry-run", action="store_true", help="show the first changes and the count; write nothing")
    s.add_argument("--json", action="store_true")
    _overwrite_opt(s)
    s.set_defaults(func=cmd_replace)

    s = dsub.add_parser("repeat", help="repeat a data file's records N times, keeping its format")
    s.add_argument("input")
    s.add_argument("-n", type=int, required=True)
    s.add_argument("-o", "--out", required=True)
    _overwrite_opt(s)
    s.set_defaults(func=cmd_repeat)

    s = dsub.add_parser("llava", help="images + GPT-style Q&A -> LLaVA records")
    s.add_argument("--images", required=True, help="folder of images")
    s.add_argument("--qa", required=True, help="Q:/A: or 问:/答: text, or the JSON a chat model returned")
    s.add_argument("--repeat", type=int, default=1)
    s.add_argument("--to", choices=WRITE_FORMATS, default="llava")
    s.add_argument("--json", action="store_true")
    s.add_argument("-o", "--out", required=True)
    _overwrite_opt(s)
    s.set_defaults(func=cmd_llava)


add_parsers = add_parser
