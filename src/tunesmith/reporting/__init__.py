"""Self-contained HTML pages (reports, comparisons): inline CSS, images embedded, nothing fetched."""
