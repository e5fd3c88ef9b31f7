"""Streamlit glue for the sfduck dashboard: auth gate, shared layout, live sync progress.

Only this package and the page files import streamlit; everything they show comes from
`sfduck_core`, so the dashboard's logic is tested without a browser.
"""
