"""Chat A/B: the same prompt, seed and settings to two models side by side (base, any checkpoint, the final
adapter, a merged model), a probe that scores identity answers over a list of questions, and a blind vote.

Only the conversation itself lives in session_state (as in streamlit/llm-examples); models come from
the workspace and are loaded once (studio/ui/chatmodels.py)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import streamlit as st

from core.errors import StudioError
from core.fsio import append_jsonl, atomic_write_json
from core.workspace import sub
from studio.ui import state
from studio.ui.chatmodels import choices, prepare, resolve_base, run_bases
from studio.ui.common import page_setup, show_error
from studio.ui.i18n import t

lang = page_setup()
st.title(t("chat.title"))
st.caption(t("chat.intro"))

# ---------------------------------------------------------------------------- what to compare
bases = list(run_bases())
current = resolve_base(state.current_model())
if current not in bases:
    bases.append(current)
base = st.selectbox(t("chat.base"), bases, format_func=lambda p: f"{Path(p).name}  ({Path(p).parent})", key="chat_base")
items = choices(base)
labels = [c["label"] for c in items]
c1, c2 = st.columns(2)
left_label = c1.selectbox(t("chat.left"), labels, index=0, key=f"left:{base}")
right_label = c2.selectbox(t("chat.right"), labels, index=1 if len(labels) > 1 else 0, key=f"right:{base}")
left = items[labels.index(left_label)]
right = items[labels.index(right_label)]

with st.sidebar:
    st.subheader(t("chat.settings"))
    gen = {
        "temperature": st.slider(t("chat.temperature"), 0.0, 2.0, 0.0, 0.05, help=t("chat.temperature_help")),
        "top_p": st.slider("top-p", 0.05, 1.0, 1.0, 0.05),
        "top_k": st.number_input("top-k", 0, 1000, 0, help=t("chat.top_k_help")),
        "max_new_tokens": st.number_input(t("chat.max_tokens"), 1, 8192, 128),
        "repetition_penalty": st.slider(t("chat.rep_penalty"), 1.0, 2.0, 1.0, 0.05),
        "seed": st.number_input(t("chat.seed"), 0, 2**31 - 1, 0),
    }
    system = st.text_area(t("chat.system"), value="", height=80)
    blind = st.toggle(t("chat.blind"), help=t("chat.blind_help"), key="blind")

image = None
from core.models import model_type_of  # noqa: E402

if model_type_of(base) == "llava":
    up = st.file_uploader(t("chat.image"), type=["png", "jpg", "jpeg", "webp"])
    if up is not None:
        from core.images import open_image

        try:
            image = open_image(up).convert("RGB")  # pixel limit: a bomb is a one-line DataError, not a traceback
            st.image(image, width=200)
        except StudioError as e:
            show_error(e)


def _messages(history: list[dict], side: str, prompt: str) -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system.strip() else []
    for turn in history:
        msgs += [{"role": "user", "content": turn["prompt"]}, {"role": "assistant", "content": turn[side]}]
    return msgs + [{"role": "user", "content": prompt}]


def _stream(choice: dict, messages: list[dict]):
    from core.chat import stream_answer

    chat, which = prepare(choice, base)
    yield from stream_answer(chat, messages, which, image=image, **{k: (int(v) if k in ("top_k", "max_new_tokens", "seed")
                                                                       else float(v)) for k, v in gen.items()})


tab_chat, tab_probe = st.tabs([t("chat.tab_chat"), t("chat.tab_probe")])

# ---------------------------------------------------------------------------- side-by-side chat
with tab_chat:
    key = f"ab:{left['path']}|{right['path']}|{base}"
    history: list[dict] = st.session_state.setdefault(key, [])
    swap = st.session_state.setdefault(key + ":swap", random.random() < 0.5) if blind else False
    shown = [(left, "left"), (right, "right")]
    if swap:
        shown.reverse()
    cols = st.columns(2)
    for col, (choice, _side), n in zip(cols, shown, (1, 2), strict=True):
        col.markdown(f"**{t('chat.model_n', n=n) if blind else choice['label']}**")
    for turn in history:
        cols = st.columns(2)
        for col, (_choice, side) in zip(cols, shown, strict=True):
            with col:
                st.chat_message("user").write(turn["prompt"])
                st.chat_message("assistant").write(turn[side])
    if prompt := st.chat_input(t("chat.ask")):
        turn = {"prompt": prompt}
        cols = st.columns(2)
        try:
            for col, (choice, side) in zip(cols, shown, strict=True):
                with col:
                    st.chat_message("user").write(prompt)
                    with st.chat_message("assistant"), st.spinner(t("chat.loading")):
                        turn[side] = st.write_stream(_stream(choice, _messages(history, side, prompt)))
            history.append(turn)
            state.update(chatted=time.time())
        except StudioError as e:
            show_error(e)
    if history and blind:
        st.write(t("chat.vote"))
        v1, v2, v3 = st.columns(3)
        vote = None
        if v1.button(t("chat.vote_1")):
            vote = shown[0][1]
        if v2.button(t("chat.vote_2")):
            vote = shown[1][1]
        if v3.button(t("chat.vote_tie")):
            vote = "tie"
        if vote:
            winner = {"left": left["label"], "right": right["label"]}.get(vote, "tie")
            append_jsonl(sub("chat") / "votes.jsonl", {"time": time.time(), "prompt": history[-1]["prompt"],
                                                        "left": left["label"], "right": right["label"],
                                                        "winner": winner})
            st.success(t("chat.revealed", one=shown[0][0]["label"], two=shown[1][0]["label"]))
    if history and st.button(t("chat.clear")):
        st.session_state.pop(key, None)
        st.session_state.pop(key + ":swap", None)
        st.rerun()

# ---------------------------------------------------------------------------- probe
with tab_probe:
    from core.demo import unrelated_prompts
    from core.probe import hit_rate, run_identity_name, split_identity_questions

    st.caption(t("chat.probe_intro"))
    # the name the compared run's data taught (its config's data_path), else the studio's default
    found = next((n for c in (right, left) if c["kind"] != "base" and (n := run_identity_name(c["path"]))), None)
    name = st.text_input(t("chat.probe_name"), value=found or "小天", key=f"probe_name:{found}")
    _train_q, held_out = split_identity_questions()
    c1, c2 = st.columns(2)
    id_text = c1.text_area(t("chat.probe_identity"), value="\n".join(held_out), height=200)
    # open-domain prompts of assets/probe (written apart from all training data), 10 zh + 10 en
    other_text = c2.text_area(t("chat.probe_other"), value="\n".join(unrelated_prompts(20)), height=200,
                              help=t("chat.probe_other_help"))
    if st.button(t("chat.probe_run"), type="primary", key="probe_run"):
        from core.chat import answer

        id_q = [q.strip() for q in id_text.splitlines() if q.strip()]
        other_q = [q.strip() for q in other_text.splitlines() if q.strip()]
        rows, result = [], {}
        try:
            bar = st.progress(0.0)
            total = 2 * (len(id_q) + len(other_q)) or 1
            done = 0
            for side, choice in (("left", left), ("right", right)):
                chat, which = prepare(choice, base)
                answers = []
                for q in id_q + other_q:
                    msgs = ([{"role": "system", "content": system}] if system.strip() else []) + [
                        {"role": "user", "content": q}]
                    answers.append(answer(chat, msgs, which, image=image, max_new_tokens=int(gen["max_new_tokens"]),
                                          temperature=float(gen["temperature"]), top_p=float(gen["top_p"]),
                                          top_k=int(gen["top_k"]), seed=int(gen["seed"]),
                                          repetition_penalty=float(gen["repetition_penalty"])))
                    done += 1
                    bar.progress(done / total)
                result[side] = {"label": choice["label"], "answers": answers,
                                "identity": hit_rate(answers[: len(id_q)], name),
                                "leak": hit_rate(answers[len(id_q):], name)}
            for i, q in enumerate(id_q + other_q):
                rows.append({t("chat.col_kind"): t("chat.kind_identity") if i < len(id_q) else t("chat.kind_other"),
                             t("chat.col_q"): q, "A: " + left["label"]: result["left"]["answers"][i],
                             "B: " + right["label"]: result["right"]["answers"][i]})
            m = st.columns(4)
            m[0].metric(t("chat.hit", side="A"), f"{sum(name in a for a in result['left']['answers'][:len(id_q)])}/{len(id_q)}")
            m[1].metric(t("chat.hit", side="B"), f"{sum(name in a for a in result['right']['answers'][:len(id_q)])}/{len(id_q)}")
            m[2].metric(t("chat.leak", side="A"), f"{result['left']['leak']:.0%}")
            m[3].metric(t("chat.leak", side="B"), f"{result['right']['leak']:.0%}")
            st.dataframe(rows, hide_index=True, width="stretch")
            out = sub("chat") / f"probe-{time.strftime('%Y%m%d-%H%M%S')}.json"
            atomic_write_json(out, {"name": name, "settings": gen, "system": system, "identity_questions": id_q,
                                    "other_questions": other_q, **result})
            state.update(chatted=time.time())
            st.caption(t("chat.probe_saved", path=str(out)))
        except StudioError as e:
            show_error(e)
