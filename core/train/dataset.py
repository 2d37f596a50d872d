"""Canonical samples -> token ids with labels, packing, and the collator the Trainer uses.

Loss is put on assistant turns only (unless a turn says `"loss": false`); pretraining samples
(`role: pretrain`) get loss on every token and no chat template. Turns are rendered with the
tokenizer's chat template one prefix at a time, so the loss mask follows whatever template the
model uses. Packed rows carry per-sample position ids and no attention mask: transformers then
builds a block-diagonal causal mask (sdpa/eager), so packed samples never attend to each other.
For a varlen kernel (flash-attn, studio_varlen) the micro-batch is one flat sequence with the
sample boundaries beside it: no padding to the widest row, no mask.

    python -m pytest tests/unit/test_train_dataset.py
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

import torch

IGNORE = -100


def _render_segments(tokenizer, messages: list[dict]) -> list[tuple[str, bool]]:
    """Split a conversation into (text, has_loss) pieces that concatenate to the full rendering."""
    pieces: list[tuple[str, bool]] = []
    done = ""
    for i, msg in enumerate(messages):
        nxt = messages[i + 1]["role"] if i + 1 < len(messages) else None
        text = tokenizer.apply_chat_template(
            messages[: i + 1], tokenize=False, add_generation_prompt=(nxt == "assistant")
        )
        if not text.startswith(done):
            # A template that rewrites earlier turns (rare): keep the common part, re-render the rest.
            k = 0
            while k < min(len(done), len(text)) and done[k] == text[k]:
                k += 1
            pieces = _trim(pieces, k)
            done = text[:k]
        new = text[len(done):]
        is_answer = msg["role"] == "assistant" and msg.get("loss", True)
        if new:
            pieces.append((new, is_answer))
        done = text
    return pieces


def _trim(pieces: list[tuple[str, bool]], keep: int) -> list[tuple[str, bool]]:
    out, n = [], 0
    for text, loss in pieces:
        if n + len(text) <= keep:
            out.append((text, loss))
            n += len(text)
        else:
            if keep - n > 0:
                out.append((text[: keep - n], loss))
            break
    return out


def encode_sample(tokenizer, sample: dict, max_length: int, system: str = "") -> dict | None:
    """One canonical sample -> {input_ids, labels}; None when nothing in it carries loss."""
    messages = sample["messages"]
    if messages and all(m["role"] == "pretrain" for m in messages):
        text = "".join(m["content"] for m in messages)
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]
        ids = ids[:max_length]
        return {"input_ids": ids, "labels": list(ids)} if len(ids) > 1 else None
    if system and messages and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    input_ids: list[int] = []
    labels: list[int] = []
    for text, has_loss in _render_segments(tokenizer, messages):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        input_ids.extend(ids)
        labels.extend(ids if has_loss else [IGNORE] * len(ids))
    input_ids, labels = input_ids[:max_length], labels[:max_length]
    if all(x == IGNORE for x in labels):
        return None
    return {"input_ids": input_ids, "labels": labels}


def encode_all(tokenizer, samples: Iterable[dict], max_length: int, system: str = "") -> tuple[list[dict], dict]:
    """Encode every sample; returns (encoded, stats) with how many were dropped or truncated."""
    out: list[dict] = []
    stats = {"samples": 0, "dropped_no_loss": 0, "truncated": 0, "tokens": 0}
    for sample in samples:
        stats["samples"] += 1
        enc = encode_sample(tokenizer, sample, max_length, system)
        if enc is None:
            stats["dropped_no_loss"] += 1
            continue
        if len(enc["input_ids"]) >= max_length:
            stats["truncated"] += 1
        stats["tokens"] += len(enc["input_ids"])
        out.append(enc)
    return out, stats


def pack(encoded: list[dict], max_length: int, seed: int = 0) -> list[list[dict]]:
    """Greedy first-fit-decreasing packing of samples into rows of at most max_length tokens."""
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]["input_ids"]))
    rows: list[list[dict]] = []
    room: list[int] = []
    for i in order:
        n = len(encoded[i]["input_ids"])
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(encoded[i])
                room[r] -= n
                break
        else:
            rows.append([encoded[i]])
            room.append(max_length - n)
    random.Random(seed).shuffle(rows)
    return rows


class SFTDataset(torch.utils.data.Dataset):
    """Items are lists of encoded samples: one sample each unpacked, several when packed."""

    def __init__(self, rows: list[list[dict]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> list[dict]:
        return self.rows[i]


def varlen_boundaries(position_ids: torch.Tensor) -> dict:
    """transformers' flash-attention keywords for packed rows: every sample's start in the flattened batch.

    cu_seq_lens_* (int32, starts + the end) and max_length_* (the longest sample, a Python int).
    """
    from core.train.varlen import boundaries

    cu, longest = boundaries(position_ids)
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}


# a flat varlen batch is padded to a multiple of this: Triton kernels (Liger's RoPE, RMSNorm) specialise on an
# integer argument's divisibility by 16, so a token count that changed it from one step to the next compiled a new
# kernel variant mid-run (a 0.1-0.2 s stall, at a random step)
FLAT_MULTIPLE = 16


def labelled_rows(labels: torch.Tensor) -> torch.Tensor:
    """Flat indices (over batch x length) of the positions whose next token has a label: the rows a causal LM's
    loss reads from its head. Computed on the CPU, where it costs no host sync."""
    has_next = torch.zeros_like(labels, dtype=torch.bool)
    has_next[..., :-1] = labels[..., 1:] != IGNORE
    return torch.nonzero(has_next.reshape(-1), as_tuple=True)[0]


@dataclass
class Collator:
    """Builds a batch from rows. Packed: rows with position ids (or one flat sequence); unpacked: padded + mask."""

    pad_token_id: int
    packed: bool
    # packed rows for a varlen attention kernel: the micro-batch's rows go in as ONE sequence (no padding up to the
    # widest row: those tokens were computed for nothing), with the sample boundaries computed here on the CPU (from
    # position ids on the GPU they cost a host sync per forward). Only for a varlen kernel: sdpa would build a dense
    # mask over the whole flat sequence.
    varlen: bool = False
    # also hand over which positions carry a label (after the one-token shift), as `studio_head_rows`: the head and
    # its cross-entropy then run on those rows only (prompt tokens need no logits). For the studio's fused head
    # (core/train/fused_ce.py); the engine takes the key out of the batch before the model sees it.
    head_rows: bool = False

    def _flat_rows(self, rows: list[list[dict]]) -> list[tuple[list[int], list[int], list[int]]]:
        flat = []
        for row in rows:
            ids, labels, pos = [], [], []
            for s in row:
                ids += s["input_ids"]
                # the first token of a sample is never predicted from the previous sample
                labels += [IGNORE] + s["labels"][1:]
                pos += list(range(len(s["input_ids"])))
            flat.append((ids, labels, pos))
        if self.varlen:
            flat = [tuple([x for f in flat for x in f[part]] for part in range(3))]
        return flat

    def __call__(self, rows: list[list[dict]]) -> dict[str, torch.Tensor]:
        if self.packed:
            flat = self._flat_rows(rows)
            width = max(len(f[0]) for f in flat)
            if self.varlen:
                width = -(-width // FLAT_MULTIPLE) * FLAT_MULTIPLE
            batch_ids, batch_labels, batch_pos = [], [], []
            for ids, labels, pos in flat:
                pad = width - len(ids)
                batch_ids.append(ids + [self.pad_token_id] * pad)
                batch_labels.append(labels + [IGNORE] * pad)
                batch_pos.append(pos + list(range(pad)))  # padding forms its own "sample"
            batch = {
                "input_ids": torch.tensor(batch_ids),
                "labels": torch.tensor(batch_labels),
                "position_ids": torch.tensor(batch_pos),
            }
            if self.varlen:
                batch.update(varlen_boundaries(batch["position_ids"]))
        else:
            samples = [row[0] for row in rows]
            width = max(len(s["input_ids"]) for s in samples)
            ids, labels, mask = [], [], []
            for s in samples:
                n = len(s["input_ids"])
                ids.append(s["input_ids"] + [self.pad_token_id] * (width - n))
                labels.append(s["labels"] + [IGNORE] * (width - n))
                mask.append([1] * n + [0] * (width - n))
            batch = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                     "attention_mask": torch.tensor(mask)}
        if self.head_rows:
            batch["studio_head_rows"] = labelled_rows(batch["labels"])
        return batch
