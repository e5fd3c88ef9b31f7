"""sfduck: copy Snowflake tables into a local DuckDB file, exactly and cheaply.

The package is a library: the CLI (`python -m sfduck_core`) and the Streamlit pages are thin
front ends over it. It never imports streamlit.
"""

__version__ = "0.1.0"
