"""CLI verbs for data (being written)."""

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    return None


add_parsers = add_parser
