"""A personal-assistant chat app (Streamlit) for a Hugging Face Space or a ModelScope studio.

Written by Fine-Tune Studio (core/publish/space.py fills in the four constants below); the
Streamlit variant of the XTuner tutorial's web demo, with public transformers APIs only: the
tokenizer's chat template, its end-of-turn tokens as stop tokens, TextIteratorStreamer for
streaming, GPU when there is one and CPU otherwise.

Run it locally against a folder (no download):
    MODEL_PATH=workspace/merged/demo streamlit run app.py --server.address 127.0.0.1
Environment: MODEL_PATH (a local model folder), MODEL_ID (another repo id), MAX_NEW_TOKENS (512),
TEMPERATURE (0 = greedy).
"""

import json
import os
from threading import Thread

import streamlit as st
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

MODEL_ID = "__MODEL_ID__"
HUB = "__HUB__"
TITLE = "__TITLE__"
SYSTEM_PROMPT = "__SYSTEM_PROMPT__"

MAX_NEW_TOKENS = int(os.environ.get("MAX_NEW_TOKENS", "512"))
TEMPERATURE = float(os.environ.get("TEMPERATURE", "0"))
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


@st.cache_resource(max_entries=1)
def load():
    path = model_folder()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.float32
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
    ids = set()
    gen_eos = getattr(model.generation_config, "eos_token_id", None)
    ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
    ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN if t in vocab)
    return model.to(device).eval(), tokenizer, sorted(i for i in ids if i is not None)


def stream_answer(model, tokenizer, stop, messages):
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True).to(model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    sampling = {"do_sample": True, "temperature": TEMPERATURE, "top_p": 0.8} if TEMPERATURE > 0 else {"do_sample": False}
    kwargs = dict(**inputs, streamer=streamer, max_new_tokens=MAX_NEW_TOKENS, eos_token_id=stop,
                  pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0], **sampling)
    Thread(target=model.generate, kwargs=kwargs, daemon=True).start()
    yield from streamer


st.set_page_config(page_title=TITLE)
st.title(TITLE)
model, tokenizer, stop = load()

with st.sidebar:
    if st.button("Clear chat / 清空对话"):
        st.session_state.messages = []

if "messages" not in st.session_state:
    st.session_state.messages = []
for m in st.session_state.messages:
    with st.chat_message(m["role"]):
        st.markdown(m["content"])

if prompt := st.chat_input("Say something / 说点什么"):
    st.session_state.messages.append({"role": "user", "content": prompt})
    with st.chat_message("user"):
        st.markdown(prompt)
    history = ([{"role": "system", "content": SYSTEM_PROMPT}] if SYSTEM_PROMPT else []) + st.session_state.messages
    with st.chat_message("assistant"):
        answer = st.write_stream(stream_answer(model, tokenizer, stop, history))
    st.session_state.messages.append({"role": "assistant", "content": answer})
