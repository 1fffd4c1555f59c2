"""What a person reads: the HTML/JSON report and its sections, figures, and one-line summaries."""
