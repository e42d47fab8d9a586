"""Stand-in for CrewAI (tests only): the package layout CREWAI.md describes, nothing else."""
