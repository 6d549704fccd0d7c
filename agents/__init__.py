"""The language-model agent that plays both proposer and solver."""
