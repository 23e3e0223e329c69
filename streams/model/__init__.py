"""The PQL model language: spec, expressions, loader, errors with line and field."""
