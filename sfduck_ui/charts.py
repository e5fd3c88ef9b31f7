"""The History page's charts and a job's detail, drawn the same way everywhere.

Every time axis is calendar buckets (sfduck_core.history.date_axis); every status has the one
colour of sfduck_ui.status; series that are not statuses (rows, durations, phases) use the brand's
teals, never a status colour; numbers read as people write them (separators, MB, s/min).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from sfduck_core.history import bar_middles, date_axis, job_fields, per_bucket, phase_timeline
from sfduck_core.humanize import duration_unit, human_duration
from sfduck_ui import status as look

BRAND = look.COLORS["primary"]
BRAND_LIGHT = "#7FC4D3"
PHASE_COLORS = {"unload": "#0E7490", "query": "#0E7490", "download": "#2BA3B8", "load": "#5CC1D1",
                "merge": "#9ED9E2", "swap": "#9ED9E2"}
HEIGHT = 320
HALF_WIDTH_TICKS = 6  # a chart in half the page: fewer dates, so they stay level and readable


def _layout(fig: go.Figure, title: str, since: dt.date, until: dt.date, bucket: str, y_title: str,
            y_format: str = ",d", max_ticks: int = 12) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0, "xanchor": "left"}, height=HEIGHT,
                      margin={"l": 10, "r": 10, "t": 60, "b": 10}, barmode="stack", bargap=0,
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1, "xanchor": "right",
                              "title": None},
                      hovermode="x unified", xaxis=date_axis(since, until, bucket, max_ticks).as_layout())
    fig.update_yaxes(title=y_title, tickformat=y_format, rangemode="tozero")
    if y_format == ",d":  # counts: whole-number ticks only (plotly would put two "1"s at 0.5 and 1)
        fig.update_yaxes(tick0=0, dtick=_count_step(fig))
    return fig


def _count_step(fig: go.Figure) -> int | None:
    """1 for small counts, else plotly's own choice (None)."""
    stacked: dict[Any, float] = {}
    for trace in fig.data:
        for x, y in zip(trace.x if trace.x is not None else [], trace.y if trace.y is not None else [],
                        strict=False):
            if y is not None and y == y:  # not NaN
                stacked[x] = stacked.get(x, 0.0) + float(y)
    largest = max(stacked.values(), default=0.0)
    return 1 if largest <= 8 else None


def syncs_by_status(summary: pd.DataFrame, since: dt.date, until: dt.date, bucket: str) -> go.Figure:
    """Syncs per bucket, stacked by status in board order, each status in its own colour."""
    fig = go.Figure()
    colors = look.chart_colors()
    summary = summary.assign(label=[look.label(s) for s in summary["status"]])
    for label in [*look.chart_order(), *sorted(set(summary["label"]) - set(look.chart_order()))]:
        part = summary[summary["label"] == label]
        if part.empty:
            continue
        middles, width = bar_middles(part["bucket"], bucket)
        fig.add_bar(x=middles, y=part["jobs"], name=label, width=width, marker_color=colors.get(label, "#999999"),
                    showlegend=True,
                    hovertemplate=f"%{{y:,}} {label}<extra></extra>")
    return _layout(fig, f"Syncs per {bucket}, by status", since, until, bucket, "syncs")


def rows_per_bucket(summary: pd.DataFrame, since: dt.date, until: dt.date, bucket: str) -> go.Figure:
    """Rows the completed syncs moved, per bucket."""
    done = per_bucket(summary[summary["status"] == "completed"])
    fig = go.Figure()
    if not done.empty:
        middles, width = bar_middles(done["bucket"], bucket)
        fig.add_bar(x=middles, y=done["rows"], width=width, name="rows", marker_color=BRAND,
                    hovertemplate="%{y:,} rows<extra></extra>")
    return _layout(fig, f"Rows synced per {bucket}", since, until, bucket, "rows", max_ticks=HALF_WIDTH_TICKS)


def duration_per_bucket(summary: pd.DataFrame, since: dt.date, until: dt.date, bucket: str) -> go.Figure:
    """Average sync duration per bucket (bars) and the longest (marks), in s, min or h by their size."""
    grouped = per_bucket(summary)
    divisor, unit = duration_unit(grouped["max_duration_s"].max() if not grouped.empty else None)
    fig = go.Figure()
    if not grouped.empty:
        middles, width = bar_middles(grouped["bucket"], bucket)
        fig.add_bar(x=middles, y=grouped["avg_duration_s"] / divisor, width=width, name="average",
                    marker_color=BRAND, hovertemplate=f"average %{{y:,.1f}} {unit}<extra></extra>")
        fig.add_scatter(x=middles, y=grouped["max_duration_s"] / divisor, name="longest", mode="markers",
                        marker={"color": BRAND_LIGHT, "symbol": "line-ew-open", "size": 14,
                                "line": {"width": 3, "color": BRAND_LIGHT}},
                        hovertemplate=f"longest %{{y:,.1f}} {unit}<extra></extra>")
    return _layout(fig, f"Sync duration per {bucket} ({unit})", since, until, bucket, unit, y_format=",.3~f",
                   max_ticks=HALF_WIDTH_TICKS)


def phase_chart(job: dict[str, Any]) -> go.Figure | None:
    """The job's phases end to end on one bar: unload (or query), download, load, merge."""
    phases = phase_timeline(job)
    if not phases:
        return None
    total = phases[-1][1] + phases[-1][2]
    divisor, unit = duration_unit(total)
    fig = go.Figure()
    for name, start, seconds in phases:
        fig.add_bar(y=["phases"], x=[seconds / divisor], base=[start / divisor], orientation="h", name=name,
                    marker_color=PHASE_COLORS.get(name, BRAND_LIGHT), text=[f"{name} {human_duration(seconds)}"],
                    textposition="inside", insidetextanchor="middle", textangle=0,
                    hovertemplate=f"{name}: {human_duration(seconds)}<extra></extra>")
    fig.update_layout(height=170, barmode="overlay", margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      title={"text": f"Phases ({human_duration(total)} in all)", "x": 0},
                      uniformtext={"minsize": 10, "mode": "hide"},  # a phase too short to label: see the legend
                      legend={"orientation": "h", "y": 1.15, "yanchor": "bottom", "x": 1, "xanchor": "right"})
    fig.update_yaxes(visible=False)
    fig.update_xaxes(title=unit, rangemode="tozero")
    return fig


def job_detail(job: dict[str, Any]) -> None:
    """A job as labelled fields and a timeline of its phases; the raw record stays one click away."""
    fields = job_fields(job)
    if job.get("error_message"):
        st.error(f"This sync {job['status']}: {job['error_message']}", icon=":material/error:")
    timeline = phase_chart(job)
    if timeline is not None:
        st.plotly_chart(timeline, width="stretch", key="phase_chart")
    else:
        st.caption("No phase timings were recorded for this job (it moved no data).")
    st.table(pd.DataFrame(fields, columns=["field", "value"]).set_index("field"))
    with st.expander("Raw record (JSON)", icon=":material/data_object:"):
        st.json(job, expanded=1)
