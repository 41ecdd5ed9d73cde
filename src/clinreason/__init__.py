"""clinreason: build expert-verified clinical reasoning datasets with a human-LLM hybrid loop."""

__version__ = "0.1.0"
