"""Rendering: the report (markdown and HTML from one context) and its figures."""
