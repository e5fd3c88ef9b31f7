"""Connection: `sfduck doctor`'s checks of the Snowflake account, run on request (they take seconds),
and, for a DuckLake target, its retention of old versions."""
# ruff: noqa: E402  -- the login/role gate must be the page's first statement, before other imports

from sfduck_ui.auth import require_page

ctx, viewer = require_page("connection")

import streamlit as st

from sfduck_core.doctor import FAIL, PASS, run_doctor
from sfduck_core.retention import policy_from
from sfduck_ui.layout import user_errors

_REPORT_KEY = "connection_report"
_RETENTION_KEY = "connection_retention"
_BOX = {PASS: (st.success, ":material/check_circle:"), FAIL: (st.error, ":material/error:")}

st.title("Connection")
st.caption("Proves that the Snowflake account works before the first sync: settings, login and session, rights, "
           "a round trip of every mapped type through both transports, and speed. Nothing is left behind in "
           "the account. The same checks as `sfduck doctor`.")
if st.button("Run checks", type="primary", icon=":material/stethoscope:"):
    with user_errors("running the checks"), st.spinner("Checking the connection..."):
        st.session_state[_REPORT_KEY] = run_doctor(ctx.settings, lambda: ctx.engine.snowflake).as_dict()


def lake_retention() -> None:
    """A lake's old versions: what the policy would expire (a dry run), then expiring them."""
    st.subheader("Lake retention")
    policy = policy_from(ctx.settings)
    when = (f"daily by the server (cron `{ctx.settings.lake_retention_cron}`, UTC)"
            if ctx.settings.lake_retention_cron else "only on request (SFDUCK_LAKE_RETENTION_SCHEDULE=off)")
    st.caption(f"The policy {policy.describe()}; it runs {when}. Expired versions can no longer be previewed "
               "or restored; their files are deleted.")
    check, apply = st.columns(2)
    if check.button("Show what would be expired", icon=":material/preview:"):
        with user_errors("checking the retention"):
            st.session_state[_RETENTION_KEY] = ctx.apply_retention(viewer.username, dry_run=True)
    if apply.button("Expire old versions now", icon=":material/delete_sweep:"):
        with user_errors("applying the retention"), st.spinner("Expiring old versions..."):
            st.session_state[_RETENTION_KEY] = ctx.apply_retention(viewer.username)
    outcome = st.session_state.get(_RETENTION_KEY)
    if outcome is None:
        return
    if outcome["dry_run"]:
        ids = outcome["snapshots_to_expire"]
        st.info(f"{len(ids)} of {outcome['snapshots']} snapshots would be expired"
                + (f": {', '.join(map(str, ids[:50]))}{' ...' if len(ids) > 50 else ''}." if ids else "."))
    else:
        st.success(f"Expired {outcome['snapshots_expired']} of {outcome['snapshots']} snapshots; deleted "
                   f"{outcome['files_deleted']} data files and {outcome['orphans_deleted']} orphaned ones.")


if ctx.engine.store.storage.capabilities.retention:
    lake_retention()

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
