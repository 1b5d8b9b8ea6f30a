"""Model-facing code. Each wrapper loads real checkpoints with `from_pretrained(model_id)`, or builds a
tiny random-init twin in code for tests (outputs meaningless)."""
