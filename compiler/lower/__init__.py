"""Lowering: compiled runs → XManager jobs (the local executor here, GKE JobSets on clusters)."""
