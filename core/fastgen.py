"""Fast chat decoding on a GPU: a static KV cache and the one-token forward replayed as a CUDA graph.

Eager decoding of a 7B model is launch-bound: each new token runs about a thousand small kernels, each
launched from Python (21.7 ms per token on an H100, where reading the weights once takes ~4.5 ms).
Capturing the one-token forward once as a CUDA graph and replaying it launches them all at once, with
no compile step (torch.compile's "reduce-overhead" does the same but compiles for minutes on a 7B).
The prompt itself (prefill) runs eagerly, so the first token is as fast as before.

Used by core.chat.stream_answer when the model is a plain causal LM in 16/32-bit on CUDA (adapters
attached or not); everything else (CPU, 4/8-bit, LLaVA) goes through transformers' generate.
STUDIO_CUDA_GRAPHS=0 turns it off.

    from core.fastgen import Decoder
    dec = Decoder.for_model(model, need=len(prompt_ids) + max_new_tokens)
    for token_id in dec.generate(input_ids, max_new_tokens=256, stop_ids=[2], key="adapter"): ...
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch

_BUCKET = 1024  # cache lengths are rounded up to this, so most chats reuse one cache and its graphs
_ATTR = "_studio_decoder"  # where a model keeps its Decoder


def _base(model):
    """The transformers model under a PEFT wrapper (or the model itself)."""
    return getattr(model, "get_base_model", lambda: model)()


def enabled(model, image=None) -> bool:
    """Whether `model` can decode through a captured graph here."""
    if os.environ.get("STUDIO_CUDA_GRAPHS", "1") == "0" or image is not None or not torch.cuda.is_available():
        return False
    base = _base(model)
    if getattr(base, "hf_quantizer", None) is not None:
        return False  # bitsandbytes' 4/8-bit kernels are not known to be capture-safe
    if getattr(base.config, "model_type", "") == "llava":
        return False
    if len(set(map(str, (getattr(base, "hf_device_map", None) or {}).values()))) > 1:
        return False  # split over several GPUs: one graph would have to span devices
    return getattr(model, "device", torch.device("cpu")).type == "cuda"


class Decoder:
    """A static KV cache of `max_len` positions for `model`, and one captured graph per adapter state.

    A graph bakes in the Python path taken at capture (which adapter is active, or none), so graphs are
    kept per `key`; the cache tensors and the input buffers are shared by all of them (one answer at a time:
    core.chat holds the model's lock while decoding).
    """

    def __init__(self, model, max_len: int, *, graphs: bool = True):
        from transformers import StaticCache
        from transformers.cache_utils import StaticLayer

        self.model, self.max_len = model, max_len
        config = _base(model).config
        self.cache = StaticCache(config=config, max_cache_len=max_len)
        if any(type(layer) is not StaticLayer for layer in self.cache.layers):
            # sliding-window layers keep their length in a Python int, which a replayed graph would not advance
            raise ValueError("this model's cache layers cannot be captured")
        dev = model.device
        self.graphs_on = graphs and dev.type == "cuda"
        self.ids = torch.zeros((1, 1), dtype=torch.long, device=dev)
        self.pos = torch.zeros((1, 1), dtype=torch.long, device=dev)
        self.graphs: dict[str, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    @staticmethod
    def for_model(model, need: int) -> Decoder:
        """The model's decoder with room for `need` positions (made, or remade larger, on demand)."""
        dec = getattr(model, _ATTR, None)
        if dec is None or dec.max_len < need:
            release(model)  # the old cache and graphs go before the new ones are allocated
            dec = Decoder(model, -(-need // _BUCKET) * _BUCKET)
            setattr(model, _ATTR, dec)
        return dec

    def _forward(self, ids: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=ids, position_ids=pos, past_key_values=self.cache, use_cache=True,
                         logits_to_keep=1)
        return out.logits[:, -1, :]

    def _lengths(self) -> list[torch.Tensor]:
        return [layer.cumulative_length for layer in self.cache.layers]

    def _capture(self) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        # the warm-up runs write the current position's K/V (the same values the replay writes) but also
        # advance each layer's length counter: put the counters back after them
        saved = [c.clone() for c in self._lengths()]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._forward(self.ids, self.pos)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            logits = self._forward(self.ids, self.pos)
        for c, s in zip(self._lengths(), saved, strict=True):
            c.copy_(s)
        return graph, logits

    def step(self, token: torch.Tensor, position: int, key: str = "") -> torch.Tensor:
        """Logits for the next token after `token` (shape (1,)) at `position`."""
        self.ids.copy_(token.view(1, 1))
        self.pos.fill_(position)
        if not self.graphs_on:
            return self._forward(self.ids, self.pos)
        if key not in self.graphs:
            self.graphs[key] = self._capture()
        graph, logits = self.graphs[key]
        graph.replay()
        return logits

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, *, max_new_tokens: int, stop_ids: list[int] | None = None,
                 temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0, repetition_penalty: float = 1.0,
                 key: str = "") -> Iterator[int]:
        """Yield new token ids one by one (greedy when temperature is 0), stopping after a stop id."""
        n = input_ids.shape[1]
        if n + max_new_tokens > self.max_len:
            raise ValueError(f"{n} + {max_new_tokens} tokens do not fit a cache of {self.max_len}")
        self.cache.reset()
        logits = self._forward(input_ids, torch.arange(n, device=input_ids.device).unsqueeze(0))
        seen = input_ids[0].clone() if repetition_penalty != 1.0 else None
        stops = set(stop_ids or [])
        for i in range(max_new_tokens):
            token = pick(logits, temperature=temperature, top_p=top_p, top_k=top_k,
                         repetition_penalty=repetition_penalty, seen=seen)
            tid = int(token)
            yield tid
            if tid in stops or i == max_new_tokens - 1:
                return
            if seen is not None:
                seen = torch.cat([seen, token])
            logits = self.step(token, n + i, key)


def release(model) -> None:
    """Drop `model`'s decoder (its cache and graphs), e.g. before the model is wrapped in another one."""
    if vars(model).pop(_ATTR, None) is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def pick(logits: torch.Tensor, *, temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0,
         repetition_penalty: float = 1.0, seen: torch.Tensor | None = None) -> torch.Tensor:
    """The next token (shape (1,)) from one row of logits, with generate's sampling settings."""
    x = logits.reshape(-1).float()
    if repetition_penalty != 1.0 and seen is not None and seen.numel():
        prev = x[seen]
        x = x.scatter(0, seen, torch.where(prev > 0, prev / repetition_penalty, prev * repetition_penalty))
    if not temperature or temperature <= 0:
        return x.argmax().view(1)
    x = x / temperature
    if top_k and top_k > 0:
        kth = torch.topk(x, min(top_k, x.numel())).values[-1]
        x = x.masked_fill(x < kth, float("-inf"))
    if top_p < 1.0:
        sorted_x, order = torch.sort(x, descending=True)
        probs = sorted_x.softmax(-1)
        # drop a token when the ones before it already cover top_p (the first one always stays)
        drop = probs.cumsum(-1) - probs > top_p
        x = x.scatter(0, order, sorted_x.masked_fill(drop, float("-inf")))
    return torch.multinomial(x.softmax(-1), 1)
