"""Classification metrics and evaluation over folder-per-class image sets."""
