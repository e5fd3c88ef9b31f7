"""sfduck's server: the dashboard and the HTTP API in one process that owns the DuckDB file.

`sfduck_server.app:app` is the ASGI application (Streamlit's `st.App` with the API mounted at
/api/v1); `./scripts/dashboard.sh` serves it. The core never imports this package.
"""
