"""The LambdaRollout document: its typed model, its schema (loaded from ``crds/``) and its loading."""
