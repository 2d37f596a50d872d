"""The Streamlit studio: one page per step of the pipeline, over the UI-free library in core/.

    python -m studio ui            # or: make studio   (prints the ssh -L line for a laptop)
    streamlit run studio/app.py    # the same, without the checks and the hint

Each page in ../pages also runs on its own (that is how the AppTest tests drive them); this file only
adds the navigation. Nothing a page needs survives in memory: runs, data and configs are on disk.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run studio/app.py` puts studio/, not the repo, on sys.path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from studio.ui.auth import require_password  # noqa: E402
from studio.ui.common import current_lang  # noqa: E402
from studio.ui.i18n import t  # noqa: E402
from studio.ui.warm import ensure as warm_up  # noqa: E402
from studio.ui.warm import timed  # noqa: E402

PAGES = [("home", "🏠", True), ("data", "📄", False), ("config", "⚙️", False), ("train", "📈", False),
         ("chat", "💬", False), ("merge", "🧩", False), ("publish", "🚀", False)]

st.set_page_config(page_title="Fine-Tune Studio", page_icon="🛠️", layout="wide")
current_lang()
nav = st.navigation([st.Page(ROOT / "pages" / f"{name}.py", title=t(f"nav.{name}"), icon=icon, url_path=name,
                             default=default) for name, icon, default in PAGES])
require_password()  # before anything else runs or loads: the pages ask again, this covers the warm-up
warm_up()  # the first load imports what every page needs, so no page's first visit pays for it
with timed(nav.url_path or "home"):
    nav.run()
