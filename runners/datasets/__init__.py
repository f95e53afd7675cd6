"""Datasets a plan reads: local files, or files of the Hugging Face Hub fetched into the user's HF cache."""
