"""Pure view models for humans: text and HTML summaries of reports (stdlib only)."""

from ckptlab.inspect._html import report_html

__all__ = ["report_html"]
