"""Publishing: a model card, a chat Space bundle, and the push to Hugging Face or ModelScope.

    python -m studio publish hf workspace/merged/demo --repo alice/assistant --space
    python -m studio publish modelscope workspace/merged/demo --repo alice/assistant --dry-run /tmp/pub

Modules: card.py (README.md with YAML metadata, zh + en, >= 200 characters), space.py (app.py from
assets/space, pinned requirements.txt, README front matter), hub.py (plan_push, push, resolve_token,
plain advice for 401/403/404/409). No streamlit import here; the Publish page calls these functions.
"""

from core.publish.card import MIN_CARD_CHARS, check_card, last_answers, model_card
from core.publish.hub import (
    check_source,
    default_stage_dir,
    plan_push,
    push,
    resolve_token,
    source_files,
    stage_model,
)
from core.publish.space import requirements, space_bundle

__all__ = ["MIN_CARD_CHARS", "check_card", "check_source", "default_stage_dir", "last_answers", "model_card",
           "plan_push", "push", "requirements", "resolve_token", "source_files", "space_bundle", "stage_model"]
