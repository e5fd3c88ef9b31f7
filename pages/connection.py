"""Connection: `sfduck doctor`'s checks of the Snowflake account, run on request (they take seconds)."""
# ruff: noqa: E402  -- the login/role gate must be the page's first statement, before other imports

from sfduck_ui.auth import require_page

ctx, viewer = require_page("connection")

import streamlit as st

from sfduck_core.doctor import FAIL, PASS, run_doctor
from sfduck_ui.layout import user_errors

_REPORT_KEY = "connection_report"
_BOX = {PASS: (st.success, ":material/check_circle:"), FAIL: (st.error, ":material/error:")}

st.title("Connection")
st.caption("Proves that the Snowflake account works before the first sync: settings, login and session, rights, "
           "a round trip of every mapped type through both transports, and speed. Nothing is left behind in "
           "the account. The same checks as `sfduck doctor`.")
if st.button("Run checks", type="primary", icon=":material/stethoscope:"):
    with user_errors("running the checks"), st.spinner("Checking the connection..."):
        st.session_state[_REPORT_KEY] = run_doctor(ctx.settings, lambda: ctx.engine.snowflake).as_dict()

report = st.session_state.get(_REPORT_KEY)
if report is None:
    st.info("Press **Run checks** to check the connection (it takes a few seconds).")
    st.stop()

verdict = "Nothing failed." if report["ok"] else "Some checks failed: syncs will not work until they pass."
st.subheader(f"{verdict} ({report['seconds']:.1f} s)")
for check in report["checks"]:
    box, icon = _BOX.get(check["status"], (st.warning, ":material/warning:"))
    advice = f"\n\n**What to do:** {check['advice']}" if check["advice"] and check["status"] != PASS else ""
    box(f"**{check['status']} · {check['check']}**: {check['found']}{advice}", icon=icon)
with st.expander("Details"):
    st.json(report, expanded=2)
