"""A personal-assistant chat app (Gradio) for a Hugging Face Space or a ModelScope studio.

Written by Fine-Tune Studio (core/publish/space.py fills in the four constants below). It downloads
the model once at start, applies the tokenizer's own chat template, stops on the tokenizer's
end-of-turn tokens and streams the answer with transformers' TextIteratorStreamer; it runs on a GPU
when there is one and on the CPU otherwise.

Run it locally against a folder (no download):
    MODEL_PATH=workspace/merged/demo GRADIO_SERVER_NAME=127.0.0.1 python app.py
Environment: MODEL_PATH (a local model folder), MODEL_ID (another repo id), MAX_NEW_TOKENS (512),
TEMPERATURE (0 = greedy), GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (Gradio's own).
"""

import json
import os
from threading import Thread

import gradio as gr
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

MODEL_ID = "__MODEL_ID__"
HUB = "__HUB__"
TITLE = "__TITLE__"
SYSTEM_PROMPT = "__SYSTEM_PROMPT__"

MAX_NEW_TOKENS = int(os.environ.get("MAX_NEW_TOKENS", "512"))
TEMPERATURE = float(os.environ.get("TEMPERATURE", "0"))
# End-of-turn markers of common chat templates; only those the tokenizer really has are used.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>")


def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def model_folder() -> str:
    if os.environ.get("MODEL_PATH"):
        return os.environ["MODEL_PATH"]
    repo = os.environ.get("MODEL_ID", MODEL_ID)
    if HUB == "modelscope":
        from modelscope import snapshot_download
    else:
        from huggingface_hub import snapshot_download
    return snapshot_download(repo)


def load(path: str):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.float32
    # A model that ships its own modelling code (InternLM2 does) says so with auto_map in config.json.
    cfg_file = os.path.join(path, "config.json")
    remote = os.path.isfile(cfg_file) and "auto_map" in _read_json(cfg_file)
    if os.path.isfile(os.path.join(path, "adapter_config.json")):
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=remote)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=remote)
    # An adapter repo may carry no tokenizer of its own; its base model's is the right one then.
    tok_path = path
    adapter_cfg = os.path.join(path, "adapter_config.json")
    if os.path.isfile(adapter_cfg) and not os.path.isfile(os.path.join(path, "tokenizer_config.json")):
        tok_path = _read_json(adapter_cfg)["base_model_name_or_path"]
    tokenizer = AutoTokenizer.from_pretrained(tok_path, trust_remote_code=remote)
    return model.to(device).eval(), tokenizer


def stop_ids(model, tokenizer) -> list[int]:
    ids = set()
    gen_eos = getattr(model.generation_config, "eos_token_id", None)
    ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
    ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN if t in vocab)
    return sorted(i for i in ids if i is not None)


MODEL, TOKENIZER = load(model_folder())
STOP_IDS = stop_ids(MODEL, TOKENIZER)


def _text(content) -> str:
    # Gradio hands history content either as a string or as a list of typed parts.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return str(content)


def build_messages(message: str, history: list) -> list[dict]:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}] if SYSTEM_PROMPT else []
    for turn in history or []:
        if isinstance(turn, dict) and turn.get("role") in ("user", "assistant"):
            messages.append({"role": turn["role"], "content": _text(turn.get("content"))})
    messages.append({"role": "user", "content": message})
    return messages


def chat(message: str, history: list):
    inputs = TOKENIZER.apply_chat_template(build_messages(message, history), add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True).to(MODEL.device)
    streamer = TextIteratorStreamer(TOKENIZER, skip_prompt=True, skip_special_tokens=True)
    sampling = {"do_sample": True, "temperature": TEMPERATURE, "top_p": 0.8} if TEMPERATURE > 0 else {"do_sample": False}
    kwargs = dict(**inputs, streamer=streamer, max_new_tokens=MAX_NEW_TOKENS, eos_token_id=STOP_IDS,
                  pad_token_id=TOKENIZER.pad_token_id if TOKENIZER.pad_token_id is not None else STOP_IDS[0],
                  **sampling)
    Thread(target=MODEL.generate, kwargs=kwargs, daemon=True).start()
    answer = ""
    for piece in streamer:
        answer += piece
        yield answer


demo = gr.ChatInterface(chat, title=TITLE, api_name="chat",
                        examples=["请介绍一下你自己", "Please introduce yourself"])

if __name__ == "__main__":
    demo.queue().launch()
