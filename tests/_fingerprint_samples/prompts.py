"""Prompt text another sample module reads as ``prompts.PREFIX``."""

PREFIX = "You are a careful extractor. "
