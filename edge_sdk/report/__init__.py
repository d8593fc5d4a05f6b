"""The before/after report rendered: JSON, Markdown, PNG chart and terminal tables."""
