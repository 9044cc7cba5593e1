"""orchestrator: a declarative, GitOps-style process orchestrator for one Linux host."""

__version__ = "0.1.0"
