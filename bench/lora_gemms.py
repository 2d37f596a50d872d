"""The thin GEMMs of a LoRA layer on their own: how each way of writing them runs on this GPU.

A 7B LoRA step spends ~40 ms in GEMMs with r = 64 on one side (bench/results): the adapters' weight gradients
reduce over all tokens (K = tokens), the rest are memory-bound. cuBLAS picks a kernel per shape and layout, so
the same product written as (A @ B) or as (B^T @ A^T)^T can run at different speeds. This times each form on
the Qwen2.5-7B projection shapes, one token count, so core/train/fused_lora.py can use the faster one.

    python -m bench.lora_gemms [--tokens 8192] [--out bench/results/x.json]
"""

from __future__ import annotations

import argparse
import json
import sys

# Qwen2.5-7B: (in, [outs]) per group as fused_lora forms them
GROUPS = {"qkv": (3584, [3584, 512, 512]), "o": (3584, [3584]), "gate_up": (3584, [18944, 18944]),
          "down": (18944, [3584])}


def _time(fn, reps: int = 20) -> float:
    import torch

    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps  # ms


def _forms(x, dh, gs, hs, bs, a_cat) -> dict:
    """Each thin product of one group, in each way of writing it."""
    import torch

    f32 = torch.float32
    pairs_gh = list(zip(gs, hs, strict=True))
    pairs_gb = list(zip(gs, bs, strict=True))
    pairs_hb = list(zip(hs, bs, strict=True))
    return {
        "d_a = dh^T x (fp32 out)": lambda: torch.mm(dh.t(), x, out_dtype=f32),
        "d_a = (x^T dh)^T (fp32 out)": lambda: torch.mm(x.t(), dh, out_dtype=f32).t(),
        "d_a = dh^T x (bf16 out, cast)": lambda: (dh.t() @ x).float(),
        "d_b = g^T h (fp32 out)": lambda: [torch.mm(g.t(), h, out_dtype=f32) for g, h in pairs_gh],
        "d_b = (h^T g)^T (fp32 out)": lambda: [torch.mm(h.t(), g, out_dtype=f32).t() for g, h in pairs_gh],
        "d_b = g^T h (bf16 out, cast)": lambda: [(g.t() @ h).float() for g, h in pairs_gh],
        "dh = g B": lambda: [g @ b for g, b in pairs_gb],
        "dh = (B^T g^T)^T": lambda: [(b.t() @ g.t()).t() for g, b in pairs_gb],
        "h = x A^T": lambda: x @ a_cat.t(),
        "lora out = h B^T": lambda: [h @ b.t() for h, b in pairs_hb],
        "dx lora = dh A": lambda: dh @ a_cat,
    }


def measure(tokens: int, r: int) -> list[dict]:
    """Milliseconds of each form of each thin product, per group of one layer."""
    import torch

    dt = torch.bfloat16
    rows = []
    for name, (fan_in, outs) in GROUPS.items():
        nr = r * len(outs)

        def rand(*shape):
            return torch.randn(*shape, device="cuda", dtype=dt)

        forms = _forms(rand(tokens, fan_in), rand(tokens, nr), [rand(tokens, o) for o in outs],
                       [rand(tokens, r) for _ in outs], [rand(o, r) for o in outs], rand(nr, fan_in))
        for form, fn in forms.items():
            rows.append({"group": name, "form": form, "ms": round(_time(fn), 4)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lora_gemms", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--r", type=int, default=64)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 1
    rows = measure(a.tokens, a.r)
    for row in rows:
        print(json.dumps(row))
    if a.out:
        from core.fsio import atomic_write_json

        atomic_write_json(a.out, {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                                  "tokens": a.tokens, "r": a.r, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
