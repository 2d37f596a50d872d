"""The honest probe (issue 20): an open-domain probe set written apart from all training data, held-out
identity paraphrases, the name read back from a run's data, the repeat warning, and `studio probe`."""

from __future__ import annotations

import re

import pytest

from core.probe import identity_name_of, probe_prompts, run_identity_name, split_identity_questions


def test_probe_set_is_curated_and_apart_from_training_data():
    from core.data import question_bank
    from core.tiny import instruction_pairs

    zh, en = probe_prompts("zh"), probe_prompts("en")
    assert len(zh) >= 30 and len(en) >= 30
    assert all(re.search(r"[\u4e00-\u9fff]", p) for p in zh) and not any(re.search(r"[\u4e00-\u9fff]", p) for p in en)
    assert len(set(zh + en)) == len(zh + en)
    trained = {q for q, _ in instruction_pairs("all")} | set(question_bank("zh")) | set(question_bank("en"))
    assert not set(zh + en) & trained
    # not the old demo's templates (sums, capitals, word translations)
    tmpl = re.compile(r"^\d+加\d+等于几|^What is \d+ plus \d+|的首都是哪里|^What is the capital of|^Translate \w+ into|^把.翻译成")
    assert not [p for p in zh + en if tmpl.search(p)]
    assert len({p[:2] for p in zh}) >= 25  # many shapes, not one pattern
    with pytest.raises(ValueError):
        probe_prompts("fr")


def test_held_out_identity_questions_are_never_trained_on():
    train, test = split_identity_questions()
    assert len(test) == 20 and not set(train) & set(test)
    assert sum(bool(re.search(r"[\u4e00-\u9fff]", q)) for q in test) == 10


def test_the_name_is_read_back_from_the_data_and_the_run(tmp_path):
    from core.data import build_identity, write_samples
    from core.demo import general_samples

    data = tmp_path / "id.jsonl"
    write_samples(build_identity("阿星", "Bob", repeat=1, mix=general_samples(100), ratio=0.5), data)
    assert identity_name_of(data) == "阿星"
    write_samples(general_samples(50), tmp_path / "g.jsonl")
    assert identity_name_of(tmp_path / "g.jsonl") is None
    assert identity_name_of(tmp_path / "missing.jsonl") is None
    en = tmp_path / "en.jsonl"
    write_samples(build_identity("Nova", "Bob", lang="en"), en)
    assert identity_name_of(en) == "Nova"

    run = tmp_path / "runs" / "r1"
    (run / "checkpoints" / "step-10").mkdir(parents=True)
    (run / "config.yaml").write_text(f"data_path: {data}\n", encoding="utf-8")
    (run / "status.json").write_text("{}", encoding="utf-8")
    assert run_identity_name(run / "adapter") == "阿星"
    assert run_identity_name(run / "checkpoints" / "step-10") == "阿星"
    assert run_identity_name(tmp_path / "elsewhere") is None


def test_general_mix_comes_from_the_broad_set_not_templates():
    from core.demo import general_samples, unrelated_prompts
    from core.tiny import instruction_pairs

    general = {q for q, _ in instruction_pairs("general")}
    samples = general_samples(700)
    qs = [s["messages"][0]["content"] for s in samples]
    assert len(samples) == 700 and set(qs) <= general and len(set(qs)) == len(general)
    assert not set(qs) & {q for q, _ in instruction_pairs("self")}  # who-are-you questions now get the identity
    probe = set(probe_prompts())
    got = unrelated_prompts(20)
    assert len(got) == 20 and set(got) <= probe


def test_repeat_warning_when_identity_dominates():
    from core.demo import DEMO_RATIO, DEMO_REPEAT, identity_dominance, repeat_warning

    assert identity_dominance(153, DEMO_REPEAT, DEMO_RATIO) is None
    d = identity_dominance(175, 10, 0.5, n_general=600)  # the pool runs dry: 1750 identity vs 600 general
    assert d and d["n_identity"] == 1750 and d["n_general"] == 600 and d["share"] > 0.7
    assert identity_dominance(175, 1, 0.0)["share"] == 1.0
    assert "lower --repeat" in repeat_warning(175, 10, 0.0)


def test_i18n_has_the_new_keys_in_both_languages():
    from studio.ui.i18n import tr

    for key in ("chat.probe_other_help", "data.id_repeat_warn"):
        en = tr(key, "en", share="80%", n_id=10, n_gen=2)
        zh = tr(key, "zh", share="80%", n_id=10, n_gen=2)
        assert en and zh and en != zh
